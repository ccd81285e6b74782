//! Carrying out a build's outputs once its image is in the store, each under a progress
//! vertex of its own, in the order they were given; the first failure stops the rest.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::{ArchiveOutput, Destination, OutputSpec, OutputStream};
use crate::build::BuildError;
use crate::image::{self, ArchiveDest, ArchiveFormat, ImageError, Pushed};
use crate::oci::Digest;
use crate::progress::{Clock, Sink};
use crate::registry::{Client, ClientConfig};
use crate::store::Store;

/// Where the outputs' progress goes: vertices numbered from `first_vertex`.
pub(in crate::build) struct Progress<'a> {
    pub sink: &'a Sink,
    pub clock: &'a Clock,
    pub first_vertex: u64,
}

/// Writes and pushes `outputs` of the stored image `manifest` (the local store's names are
/// already made by the export). Returns what was pushed.
pub(in crate::build) async fn write(
    store: &Store,
    registry: &ClientConfig,
    manifest: &Digest,
    outputs: &[OutputSpec],
    stdout: Option<&OutputStream>,
    progress: Progress<'_>,
) -> Result<Vec<Pushed>, BuildError> {
    let mut pushed = Vec::new();
    let mut client: Option<Client> = None;
    let mut next_vertex = progress.first_vertex;
    let mut vertex = |name: String| {
        next_vertex += 1;
        progress.sink.vertex(progress.clock, next_vertex - 1, name)
    };
    for output in outputs {
        if let OutputSpec::Image(output) = output {
            if !output.push {
                continue;
            }
            let client = match &mut client {
                Some(client) => client,
                empty => empty.insert(Client::new(registry.clone()).map_err(|e| {
                    BuildError::Push {
                        reference: output
                            .names
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        source: Box::new(e.into()),
                    }
                })?),
            };
            for name in &output.names {
                let vertex = vertex(format!("pushing {name}"));
                let result = image::push_image(
                    store,
                    client,
                    manifest,
                    name,
                    &output.layers,
                    vertex.items(),
                )
                .await;
                match result {
                    Ok(done) => {
                        vertex.done();
                        pushed.push(done);
                    }
                    Err(source) => {
                        vertex.error(source.to_string());
                        return Err(BuildError::Push {
                            reference: name.to_string(),
                            source: Box::new(source),
                        });
                    }
                }
            }
            continue;
        }
        let (title, what) = describe(output);
        let vertex = vertex(title);
        let written = {
            let (store, manifest, output, stdout) = (
                store.clone(),
                manifest.clone(),
                output.clone(),
                stdout.cloned(),
            );
            tokio::task::spawn_blocking(move || {
                write_files(&store, &manifest, &output, stdout.as_ref())
            })
            .await?
        };
        match written {
            Ok(()) => vertex.done(),
            Err(source) => {
                vertex.error(source.to_string());
                return Err(BuildError::OutputWrite {
                    output: what,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(pushed)
}

/// A file output's progress title and its name in errors.
fn describe(output: &OutputSpec) -> (String, String) {
    let dest = |dest: &Destination| match dest {
        Destination::Stdout => "standard output".to_string(),
        Destination::Path(path) => path.display().to_string(),
    };
    match output {
        OutputSpec::Archive(archive) => {
            let format = match archive.format {
                ArchiveFormat::Oci => "oci",
                ArchiveFormat::Docker => "docker",
            };
            (
                format!("exporting to {format} image format"),
                format!("type={format} output to {}", dest(&archive.dest)),
            )
        }
        OutputSpec::Local { dest } => (
            "copying files to the client".to_string(),
            format!("type=local output to {}", dest.display()),
        ),
        OutputSpec::Tar { dest: to } => (
            "sending tarball".to_string(),
            format!("type=tar output to {}", dest(to)),
        ),
        OutputSpec::Image(_) => (String::new(), String::new()),
    }
}

/// Writes one archive, layout, directory or tar output.
fn write_files(
    store: &Store,
    manifest: &Digest,
    output: &OutputSpec,
    stdout: Option<&OutputStream>,
) -> Result<(), ImageError> {
    match output {
        OutputSpec::Archive(archive) => write_archive(store, manifest, archive, stdout),
        OutputSpec::Local { dest } => image::write_rootfs(store, manifest, dest),
        OutputSpec::Tar { dest } => to_stream(dest, stdout, |out| {
            image::write_rootfs_tar(store, manifest, out)
        }),
        OutputSpec::Image(_) => Ok(()),
    }
}

fn write_archive(
    store: &Store,
    manifest: &Digest,
    archive: &ArchiveOutput,
    stdout: Option<&OutputStream>,
) -> Result<(), ImageError> {
    let write = |dest: ArchiveDest<'_>| {
        image::write_image(
            store,
            manifest,
            &archive.names,
            archive.format,
            &archive.layers,
            dest,
        )
    };
    match (&archive.dest, archive.tar) {
        (Destination::Path(dir), false) => write(ArchiveDest::Dir(dir)),
        (dest, _) => to_stream(dest, stdout, |out| write(ArchiveDest::Tar(out))),
    }
}

/// Runs `write` on the file `dest` (created or truncated) or on the caller's stream.
fn to_stream(
    dest: &Destination,
    stdout: Option<&OutputStream>,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    match dest {
        Destination::Path(path) => {
            let file = std::fs::File::create(path).map_err(file_err(path))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            write(&mut out)?;
            out.flush().map_err(file_err(path))
        }
        Destination::Stdout => {
            let stream =
                stdout.ok_or_else(|| ImageError::Usage("no output stream for dest=-".into()))?;
            let mut out = stream
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            write(&mut **out)?;
            out.flush().map_err(file_err(Path::new("-")))
        }
    }
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io {
        action: "write",
        path,
        source,
    }
}
