//! Parse throughput on a large, realistic Dockerfile (`cargo bench --bench parse`).
//!
//! Prints MB/s for the syntax stage alone and for syntax + instruction typing, as the
//! median of several runs. No assertions: the numbers are for reading.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// One stage in the style of real-world Dockerfiles: continuations, comments inside
/// them, JSON and shell forms, flags, mounts, ENV/LABEL pairs and heredocs.
fn stage(index: usize) -> String {
    format!(
        r#"# Stage {index}: build the component.
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS build{index}
ARG VERSION={index}.0 TARGETARCH
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PATH="/opt/tool/bin:$PATH"
LABEL org.opencontainers.image.title="component {index}" org.opencontainers.image.version=$VERSION
WORKDIR /src/component{index}
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    apt-get update && \
    # tools the build needs
    apt-get install -y --no-install-recommends \
        build-essential ca-certificates curl git pkg-config && \
    rm -rf /var/lib/apt/lists/*
COPY --chown=1000:1000 --chmod=0644 src/ include/ ./
COPY --from=build{prev} /out/lib /usr/local/lib/
RUN <<EOF
set -eux
make -j"$(nproc)" VERSION=${{VERSION}} ARCH=${{TARGETARCH:-amd64}}
make install DESTDIR=/out
EOF
COPY <<-'CONF' /etc/component{index}.conf
	listen = 0.0.0.0:80{index}
	workers = 4
	CONF
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/usr/local/bin/healthcheck", "--quiet"]
EXPOSE 80{index}/tcp 90{index}/udp
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/component{index}"]
CMD ["--config", "/etc/component{index}.conf"]

"#,
        prev = index.saturating_sub(1),
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(label: &str, bytes: usize, runs: usize, mut work: impl FnMut()) {
    work();
    let samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    let time = median(samples);
    let mb_per_s = bytes as f64 / 1e6 / time.as_secs_f64();
    println!(
        "{label:<28} {:>8.2} ms  {mb_per_s:>8.1} MB/s",
        time.as_secs_f64() * 1e3
    );
}

fn main() {
    let text: String = (0..4000).map(stage).collect();
    let bytes = text.len();
    let file = kiln::syntax::parse(text.as_bytes()).expect("benchmark Dockerfile parses");
    println!(
        "Dockerfile: {:.1} MB, {} lines, {} instructions",
        bytes as f64 / 1e6,
        text.lines().count(),
        file.instructions.len()
    );
    measure("syntax::parse", bytes, 9, || {
        black_box(kiln::syntax::parse(black_box(text.as_bytes())).unwrap());
    });
    measure("syntax + instruction", bytes, 9, || {
        let file = kiln::syntax::parse(black_box(text.as_bytes())).unwrap();
        black_box(kiln::instruction::parse(&file).unwrap());
    });
}
