//! Image commands: pull, push, tag, images, image inspect|rm|history|prune|ls|tag, save,
//! load, login, logout. Output follows the docker CLI's.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::progress::{self, Output};
use crate::image::{self, ArchiveFormat, ImageError};
use crate::oci::{Compression, Platform, Reference};
use crate::registry::{Client, ClientConfig, DockerConfig, insecure_from_env};
use crate::store::{Store, select_root};

use super::EXIT_USAGE;

/// Options every image command understands.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Store root (default: $KILN_ROOT, /var/lib/kiln as root, else $XDG_DATA_HOME/kiln).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Registry to reach over HTTPS without verifying its certificate, then plain HTTP
    /// (repeatable; also KILN_INSECURE_REGISTRIES=a,b).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

fn parse_reference(s: &str) -> Result<Reference, String> {
    s.parse::<Reference>().map_err(|e| e.to_string())
}

pub(super) fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse_full(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SaveFormat {
    Docker,
    Oci,
}

/// How `kiln push` compresses layers stored uncompressed (the ones `kiln build` made).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PushCompression {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// `json`: one JSON object per line.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Show full image ids.
    #[arg(long)]
    no_trunc: bool,
    /// Only this repository (and tag).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Source image (name or id).
    source: String,
    /// New name.
    #[arg(value_parser = parse_reference)]
    target: Reference,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove even if a container uses the image or it has several names.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageSub {
    /// Display detailed information on images (JSON).
    Inspect {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove image names (content is freed by `kiln image prune`).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Show the history of an image.
    History {
        image: String,
        /// Do not truncate CREATED BY.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove unused blobs and snapshots.
    Prune {
        /// Accepted for docker compatibility (kiln never asks).
        #[arg(short, long)]
        force: bool,
        /// Accepted for docker compatibility (untagged content is always removed).
        #[arg(short, long)]
        all: bool,
    },
    /// List images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(TagArgs),
}

/// The image subcommands, flattened into the top-level command enum.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry.
    Pull {
        #[arg(value_parser = parse_reference, value_name = "NAME[:TAG|@DIGEST]")]
        reference: Reference,
        /// Platform to pick from a multi-platform image (default: this host's).
        #[arg(long, value_parser = parse_platform, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<Platform>,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Upload an image to a registry.
    Push {
        #[arg(value_parser = parse_reference, value_name = "NAME[:TAG]")]
        reference: Reference,
        #[arg(short, long)]
        quiet: bool,
        /// Compression of the layers kiln built (pulled layers are pushed as they are).
        #[arg(long, value_enum, default_value = "gzip")]
        compression: PushCompression,
    },
    /// Create a tag TARGET that refers to SOURCE.
    Tag(TagArgs),
    /// List images.
    Images(ListArgs),
    /// Manage images.
    Image {
        #[command(subcommand)]
        command: ImageSub,
    },
    /// Remove images (same as `image rm`).
    Rmi(RmArgs),
    /// Save images to a tar archive (stdout unless -o).
    Save {
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// docker: Docker 25+ archive (OCI layout + manifest.json); oci: OCI layout only.
        #[arg(long, value_enum, default_value = "docker")]
        format: SaveFormat,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Load images from a docker or OCI archive (stdin unless -i).
    Load {
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Log in to a registry (credentials go to ~/.docker/config.json).
    Login {
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Registry (default: docker.io).
        server: Option<String>,
    },
    /// Log out from a registry.
    Logout { server: Option<String> },
}

pub(super) fn open_store(global: &GlobalArgs) -> Result<Store> {
    let root = select_root(global.root.as_deref())?;
    Store::open(&root).with_context(|| format!("opening store {}", root.display()))
}

pub(super) fn client(global: &GlobalArgs) -> Result<Client> {
    Ok(Client::new(client_config(global))?)
}

/// How registries are reached: `--insecure-registry` and `KILN_INSECURE_REGISTRIES`, and
/// the credentials of `~/.docker/config.json`.
pub(super) fn client_config(global: &GlobalArgs) -> ClientConfig {
    let mut insecure = global.insecure_registry.clone();
    insecure.extend(insecure_from_env());
    ClientConfig::new(insecure, Arc::new(DockerConfig::from_env()))
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs an image command: errors are printed here, once each (registry and store errors
/// already carry their causes in their messages); usage errors exit 2.
pub fn run(command: ImageCommand, global: &GlobalArgs) -> Result<ExitCode> {
    match dispatch(command, global) {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {}", render(&error));
            let usage = error
                .downcast_ref::<ImageError>()
                .is_some_and(|e| matches!(e, ImageError::Usage(_)));
            Ok(if usage {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The error and its causes, skipping a cause its predecessor's message already contains.
pub(super) fn render(error: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if previous.contains(&message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&message);
        previous = message;
    }
    out
}

fn dispatch(command: ImageCommand, global: &GlobalArgs) -> Result<ExitCode> {
    match command {
        ImageCommand::Pull {
            reference,
            platform,
            quiet,
        } => pull(global, &reference, platform.as_ref(), quiet),
        ImageCommand::Push {
            reference,
            quiet,
            compression,
        } => push(global, &reference, quiet, compression),
        ImageCommand::Tag(args)
        | ImageCommand::Image {
            command: ImageSub::Tag(args),
        } => {
            image::tag(&open_store(global)?, &args.source, &args.target)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Images(args)
        | ImageCommand::Image {
            command: ImageSub::Ls(args),
        } => list(global, &args),
        ImageCommand::Image {
            command: ImageSub::Inspect { images },
        } => inspect(global, &images),
        ImageCommand::Rmi(args)
        | ImageCommand::Image {
            command: ImageSub::Rm(args),
        } => remove(global, &args),
        ImageCommand::Image {
            command: ImageSub::History { image, no_trunc },
        } => history(global, &image, no_trunc),
        ImageCommand::Image {
            command: ImageSub::Prune { .. },
        } => {
            let report = image::prune(&open_store(global)?)?;
            println!(
                "Deleted {} blobs and {} snapshots",
                report.blobs_removed, report.snapshots_removed
            );
            println!(
                "Total reclaimed space: {}",
                image::human_size(report.bytes())
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Save {
            output,
            format,
            images,
        } => save(global, output.as_deref(), format, &images),
        ImageCommand::Load { input, quiet } => load(global, input.as_deref(), quiet),
        ImageCommand::Login {
            username,
            password,
            password_stdin,
            server,
        } => login(global, username, password, password_stdin, server),
        ImageCommand::Logout { server } => {
            let server = server.unwrap_or_else(|| "docker.io".to_string());
            let removed =
                runtime()?.block_on(client(global)?.logout(&DockerConfig::from_env(), &server))?;
            if removed {
                println!("Removing login credentials for {server}");
            } else {
                println!("Not logged in to {server}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn shown_name(reference: &Reference) -> String {
    match (reference.tag(), reference.digest()) {
        (_, Some(digest)) => format!("{}@{digest}", reference.familiar()),
        (Some(tag), None) => format!("{}:{tag}", reference.familiar()),
        (None, None) => reference.familiar(),
    }
}

fn pull(
    global: &GlobalArgs,
    reference: &Reference,
    platform: Option<&Platform>,
    quiet: bool,
) -> Result<ExitCode> {
    let store = open_store(global)?;
    let client = client(global)?;
    let what = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => "latest".to_string(),
    };
    if !quiet {
        println!("{what}: Pulling from {}", reference.repository());
    }
    let pulled = runtime()?.block_on(progress::transfer(
        Output::Stdout,
        quiet,
        format!("pulling {reference}"),
        |items| image::pull(&store, &client, reference, platform, items),
    ))?;
    if !quiet {
        println!("Digest: {}", pulled.digest);
        if pulled.downloaded {
            println!(
                "Status: Downloaded newer image for {}",
                shown_name(reference)
            );
        } else {
            println!("Status: Image is up to date for {}", shown_name(reference));
        }
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

fn push(
    global: &GlobalArgs,
    reference: &Reference,
    quiet: bool,
    compression: PushCompression,
) -> Result<ExitCode> {
    let store = open_store(global)?;
    let client = client(global)?;
    let options = image::LayerOptions {
        compression: match compression {
            PushCompression::Gzip => Compression::Gzip,
            PushCompression::Zstd => Compression::Zstd,
            PushCompression::Uncompressed => Compression::None,
        },
        ..image::LayerOptions::default()
    };
    if !quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let pushed = runtime()?.block_on(progress::transfer(
        Output::Stdout,
        quiet,
        format!("pushing {reference}"),
        |items| image::push(&store, &client, reference, &options, items),
    ))?;
    let label = reference
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| pushed.digest.to_string());
    println!("{label}: digest: {} size: {}", pushed.digest, pushed.size);
    Ok(ExitCode::SUCCESS)
}

fn list(global: &GlobalArgs, args: &ListArgs) -> Result<ExitCode> {
    let store = open_store(global)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let filter = args.filter.as_deref().map(|f| match f.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
        _ => (f.to_string(), None),
    });
    let rows: Vec<_> = image::list(&store)?
        .into_iter()
        .filter(|row| match &filter {
            Some((repo, tag)) => {
                (row.repository == *repo
                    || Reference::parse(repo).is_ok_and(|r| r.familiar() == row.repository))
                    && tag.as_ref().is_none_or(|t| row.tag.as_ref() == Some(t))
            }
            None => true,
        })
        .collect();
    let short = |id: &crate::oci::Digest| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.hex()[..12].to_string()
        }
    };
    let since = |created: &Option<String>| {
        created
            .as_deref()
            .and_then(image::parse_rfc3339)
            .map(|t| image::humanize_since(now - t))
            .unwrap_or_else(|| "N/A".to_string())
    };
    let mut out = io::stdout().lock();
    if args.quiet {
        let mut seen = HashSet::new();
        for row in &rows {
            if seen.insert(row.id.clone()) {
                writeln!(out, "{}", short(&row.id))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ListFormat::Json => {
            for row in &rows {
                let line = serde_json::json!({
                    "Repository": row.repository,
                    "Tag": row.tag.clone().unwrap_or_else(|| "<none>".into()),
                    "ID": short(&row.id),
                    "Digest": row.digest.to_string(),
                    "CreatedAt": row.created.clone().unwrap_or_default(),
                    "CreatedSince": since(&row.created),
                    "Size": image::human_size(row.size),
                });
                writeln!(out, "{line}")?;
            }
        }
        ListFormat::Table => {
            let table: Vec<[String; 5]> = rows
                .iter()
                .map(|row| {
                    [
                        row.repository.clone(),
                        row.tag.clone().unwrap_or_else(|| "<none>".into()),
                        short(&row.id),
                        since(&row.created),
                        image::human_size(row.size),
                    ]
                })
                .collect();
            print_table(
                &mut out,
                ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                &table,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Columns separated by at least three spaces, like docker's tabwriter.
fn print_table<const N: usize>(
    out: &mut impl Write,
    head: [&str; N],
    rows: &[[String; N]],
) -> Result<()> {
    let mut widths = head.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn inspect(global: &GlobalArgs, images: &[String]) -> Result<ExitCode> {
    let store = open_store(global)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for query in images {
        match image::inspect(&store, query) {
            Ok(value) => found.push(value),
            Err(ImageError::NotFound(q)) => missing.push(q),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&found, &mut serializer)?;
    println!("{}", String::from_utf8_lossy(&out));
    if !missing.is_empty() {
        for query in &missing {
            eprintln!("error: no such image: {query}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn history(global: &GlobalArgs, query: &str, no_trunc: bool) -> Result<ExitCode> {
    let store = open_store(global)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let rows: Vec<[String; 5]> = image::history(&store, query)?
        .into_iter()
        .map(|row| {
            let id = match &row.id {
                Some(id) if no_trunc => id.to_string(),
                Some(id) => id.hex()[..12].to_string(),
                None => "<missing>".to_string(),
            };
            let created = row
                .created
                .as_deref()
                .and_then(image::parse_rfc3339)
                .map(|t| image::humanize_since(now - t))
                .unwrap_or_else(|| "N/A".into());
            let created_by = if !no_trunc && row.created_by.chars().count() > 45 {
                format!("{}…", row.created_by.chars().take(44).collect::<String>())
            } else {
                row.created_by
            };
            [
                id,
                created,
                created_by,
                image::human_size(row.size),
                row.comment,
            ]
        })
        .collect();
    print_table(
        &mut io::stdout().lock(),
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn remove(global: &GlobalArgs, args: &RmArgs) -> Result<ExitCode> {
    let store = open_store(global)?;
    let mut failed = false;
    for query in &args.images {
        match image::remove(&store, query, args.force) {
            Ok(removed) => {
                for image::Removed::Untagged(name) in removed {
                    println!("Untagged: {name}");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn save(
    global: &GlobalArgs,
    output: Option<&Path>,
    format: SaveFormat,
    images: &[String],
) -> Result<ExitCode> {
    let store = open_store(global)?;
    let format = match format {
        SaveFormat::Docker => ArchiveFormat::Docker,
        SaveFormat::Oci => ArchiveFormat::Oci,
    };
    match output {
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            image::save(&store, images, format, out)?;
        }
        Some(path) => {
            // Written beside the target and renamed, so a failed save leaves no torn file.
            let name = path
                .file_name()
                .with_context(|| format!("{} is not a file name", path.display()))?;
            let temp = path.with_file_name(format!(
                ".{}.kiln-{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            let written = (|| -> Result<()> {
                let file =
                    File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
                let mut out = io::BufWriter::with_capacity(1 << 20, &file);
                image::save(&store, images, format, &mut out)?;
                out.flush()?;
                drop(out);
                file.sync_all()?;
                std::fs::rename(&temp, path)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(global: &GlobalArgs, input: Option<&Path>, quiet: bool) -> Result<ExitCode> {
    let store = open_store(global)?;
    let loaded = match input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            image::load(&store, file, path)?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is empty: use -i FILE or redirect stdin"
                );
            }
            image::load(&store, io::stdin().lock(), Path::new("<stdin>"))?
        }
    };
    let _ = quiet;
    for image in loaded {
        if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        for name in image.names {
            println!("Loaded image: {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn login(
    global: &GlobalArgs,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    server: Option<String>,
) -> Result<ExitCode> {
    let server = server.unwrap_or_else(|| "docker.io".to_string());
    let Some(username) = username else {
        return Err(ImageError::Usage("login needs --username (-u)".into()).into());
    };
    let password = match (password, password_stdin) {
        (Some(_), true) => {
            return Err(ImageError::Usage(
                "--password and --password-stdin are mutually exclusive".into(),
            )
            .into());
        }
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            io::stdin().read_to_string(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            return Err(
                ImageError::Usage("login needs --password-stdin (or --password)".into()).into(),
            );
        }
    };
    if password.is_empty() {
        return Err(ImageError::Usage("empty password".into()).into());
    }
    runtime()?.block_on(client(global)?.login(
        &DockerConfig::from_env(),
        &server,
        &username,
        &password,
    ))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}
