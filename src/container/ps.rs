//! The columns of `kiln ps` that need more than a field: STATUS and COMMAND.

use super::{Container, EXIT_OWNER_GONE, Status};
use crate::gocompat::go_quote;

/// `docker ps`'s PORTS: `127.0.0.1:8080->80/tcp, …` while it runs.
pub fn ports_text(container: &Container) -> String {
    container
        .state
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip,
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `docker ps`'s STATUS: `Up 3 seconds`, `Exited (0) 19 seconds ago`, `Created`.
pub fn status_text(container: &Container, now: i64) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(crate::image::parse_rfc3339)
            .map(|t| crate::image::humanize_since(now - t))
            .unwrap_or_default()
    };
    match container.state.status {
        Status::Created => "Created".to_string(),
        Status::Running => {
            let ago = since(&container.state.started_at);
            format!("Up {}", ago.strip_suffix(" ago").unwrap_or(&ago))
        }
        Status::Exited => format!(
            "Exited ({}) {}",
            container.state.exit_code.unwrap_or(EXIT_OWNER_GONE),
            since(&container.state.finished_at)
        ),
    }
}

/// `docker ps`'s COMMAND: the argv shell-quoted, truncated to 20 characters with `…`
/// (unless `no_trunc`), then Go-quoted.
pub fn command_text(argv: &[String], no_trunc: bool) -> String {
    let joined = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let shown = if no_trunc || joined.chars().count() <= 20 {
        joined
    } else {
        let mut s: String = joined.chars().take(19).collect();
        s.push('…');
        s
    };
    go_quote(&shown)
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_command_column() {
        let argv: Vec<String> = ["sh", "-c", "sleep 100; echo done"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_text(&argv, false), "\"sh -c 'sleep 100; e…\"");
        assert_eq!(
            command_text(&argv, true),
            "\"sh -c 'sleep 100; echo done'\""
        );
        assert_eq!(command_text(&["echo".into()], false), "\"echo\"");
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = crate::oci::time::format_rfc3339(1_709_208_000, Some(5));
        assert_eq!(t, "2024-02-29T12:00:00.000000005Z");
        assert_eq!(crate::image::parse_rfc3339(&t), Some(1_709_208_000));
    }
}
