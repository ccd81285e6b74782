//! What a build does with its image: `--output`/`-o` specs in `docker buildx build`'s
//! syntax, `--push` and `--load`, parsed here (pure) for the command line and the daemon
//! alike, and carried out after the export by [`write`].
//!
//! - `type=image` (the default): the local store, tagged with `name=` (else the `-t`
//!   names); `push=true` pushes them too. `type=registry`: push only; the image is not
//!   named in the store.
//! - `type=oci` / `type=docker`: an archive at `dest=FILE` or on standard output
//!   (`dest=-`); `tar=false` writes an OCI image layout directory instead.
//! - `type=local,dest=DIR`: the image's files; `type=tar,dest=FILE|-`: the same as a tar.
//! - `-o DIR` is `type=local,dest=DIR`; `-o -` is `type=tar,dest=-`.
//!
//! Image and archive outputs take `compression=gzip|zstd|uncompressed`,
//! `compression-level=N`, `force-compression=true` and `oci-mediatypes=true|false`.

mod write;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::BuildError;
use crate::image::{ArchiveFormat, LayerOptions};
use crate::oci::{Compression, Reference};

pub(super) use write::{Progress, write};

/// One output of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `type=image` or `type=registry`.
    Image(ImageOutput),
    /// `type=oci` or `type=docker`.
    Archive(ArchiveOutput),
    /// `type=local`: the image's files in a directory.
    Local { dest: PathBuf },
    /// `type=tar`: the image's files as one tar.
    Tar { dest: Destination },
}

/// An image named in the local store and/or pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutput {
    /// `name=`; empty: the build's `-t` names.
    pub names: Vec<Reference>,
    /// Name the image in the local store (`type=image`; not `type=registry`).
    pub store: bool,
    /// Push the names to their registries.
    pub push: bool,
    pub layers: LayerOptions,
}

/// An image archive or OCI layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOutput {
    pub format: ArchiveFormat,
    pub dest: Destination,
    /// `tar=false`: an OCI image layout directory at `dest`.
    pub tar: bool,
    /// `name=`; empty: the build's `-t` names.
    pub names: Vec<Reference>,
    pub layers: LayerOptions,
}

/// Where a file output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `dest=-`: the caller's [`OutputStream`].
    Stdout,
    Path(PathBuf),
}

/// Where `dest=-` outputs are written: the command line's standard output, a daemon's
/// connection. One at most per build.
#[derive(Clone)]
pub struct OutputStream(pub(super) Arc<Mutex<Box<dyn std::io::Write + Send>>>);

impl OutputStream {
    pub fn new(writer: impl std::io::Write + Send + 'static) -> OutputStream {
        OutputStream(Arc::new(Mutex::new(Box::new(writer))))
    }
}

impl std::fmt::Debug for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputStream")
    }
}

impl OutputSpec {
    /// The default output: the local store, under the `-t` names.
    pub fn store() -> OutputSpec {
        OutputSpec::Image(ImageOutput {
            names: Vec::new(),
            store: true,
            push: false,
            layers: image_layers(true),
        })
    }

    /// `type=registry`, what `--push` adds: push only.
    pub fn registry() -> OutputSpec {
        OutputSpec::Image(ImageOutput {
            names: Vec::new(),
            store: false,
            push: true,
            layers: image_layers(true),
        })
    }

    /// Parses one `--output` value (`type=oci,dest=out.tar`, `DIR`, `-`). Errors are the
    /// user's (a usage error).
    pub fn parse(spec: &str) -> Result<OutputSpec, BuildError> {
        let invalid = |reason: String| BuildError::Output {
            spec: spec.to_string(),
            reason,
        };
        let fields = csv_fields(spec).map_err(|reason| invalid(reason.to_string()))?;
        // buildx: one bare value is a directory for `type=local`, `-` a tar on stdout.
        if fields.len() == 1 && fields[0] == spec && !spec.starts_with("type=") {
            return Ok(match spec {
                "-" => OutputSpec::Tar {
                    dest: Destination::Stdout,
                },
                "" => return Err(invalid("empty output".into())),
                dir => OutputSpec::Local {
                    dest: PathBuf::from(dir),
                },
            });
        }
        let mut kind = None;
        let mut attrs = Attrs::default();
        for field in &fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| invalid(format!("invalid value {field:?}: expected KEY=VALUE")))?;
            let key = key.trim().to_ascii_lowercase();
            if key == "type" {
                kind = Some(value.to_string());
            } else {
                attrs.0.push((key, value.to_string()));
            }
        }
        let kind = kind.ok_or_else(|| invalid("type= is required".into()))?;
        let parsed = match kind.as_str() {
            "image" | "registry" => image_output(&kind, &mut attrs),
            "oci" | "docker" => archive_output(&kind, &mut attrs),
            "local" | "tar" => files_output(&kind, &mut attrs),
            other => Err(format!(
                "unknown type {other:?} (kiln knows image, registry, oci, docker, local and tar)"
            )),
        }
        .map_err(&invalid)?;
        if let Some((key, _)) = attrs.0.first() {
            return Err(invalid(format!(
                "type={kind} does not take {key}= (it takes {})",
                keys_of(&kind)
            )));
        }
        Ok(parsed)
    }

    /// The names this output gives the image, if it names it.
    fn names_mut(&mut self) -> Option<&mut Vec<Reference>> {
        match self {
            OutputSpec::Image(image) => Some(&mut image.names),
            OutputSpec::Archive(archive) => Some(&mut archive.names),
            _ => None,
        }
    }

    /// Whether this output writes to the caller's [`OutputStream`] (`dest=-`).
    /// Whether this output reads the image's layer blobs from the store (a push alone
    /// does not: a layer the store lacks is mounted or fetched by the push itself).
    pub fn needs_layer_bytes(&self) -> bool {
        !matches!(self, OutputSpec::Image(image) if !image.store)
    }

    pub fn to_stdout(&self) -> bool {
        matches!(
            self,
            OutputSpec::Tar {
                dest: Destination::Stdout
            } | OutputSpec::Archive(ArchiveOutput {
                dest: Destination::Stdout,
                ..
            })
        )
    }
}

/// The outputs of a build from `-o` values and the `--push`/`--load` flags, as buildx
/// combines them: `--push` makes the image outputs push (or adds `type=registry`),
/// `--load` adds `type=image` unless there is one; nothing at all means `type=image`.
pub fn resolve_outputs(mut outputs: Vec<OutputSpec>, push: bool, load: bool) -> Vec<OutputSpec> {
    if push {
        let mut pushing = false;
        for output in &mut outputs {
            if let OutputSpec::Image(image) = output {
                image.push = true;
                pushing = true;
            }
        }
        if !pushing {
            outputs.push(OutputSpec::registry());
        }
    }
    let stores = |o: &OutputSpec| matches!(o, OutputSpec::Image(image) if image.store);
    if load && !outputs.iter().any(stores) {
        outputs.push(OutputSpec::store());
    }
    if outputs.is_empty() {
        outputs.push(OutputSpec::store());
    }
    outputs
}

/// `outputs` ready to carry out: the default when there are none, `tags` as the names
/// of those without `name=`. Refuses what cannot work: a push without a name, more than
/// one output on standard output, or one with no stream to write to.
pub(super) fn effective(
    outputs: &[OutputSpec],
    tags: &[Reference],
    stdout: Option<&OutputStream>,
) -> Result<Vec<OutputSpec>, BuildError> {
    let mut outputs = match outputs {
        [] => vec![OutputSpec::store()],
        some => some.to_vec(),
    };
    for output in &mut outputs {
        if let Some(names) = output.names_mut()
            && names.is_empty()
        {
            *names = tags.to_vec();
        }
    }
    let refuse = |reason: &str| BuildError::Output {
        spec: String::new(),
        reason: reason.to_string(),
    };
    if outputs
        .iter()
        .any(|o| matches!(o, OutputSpec::Image(image) if image.push && image.names.is_empty()))
    {
        return Err(refuse("pushing needs a name: give -t NAME or name=NAME"));
    }
    match outputs.iter().filter(|o| o.to_stdout()).count() {
        0 => {}
        1 if stdout.is_some() => {}
        1 => return Err(refuse("dest=-: this caller has no output stream")),
        _ => return Err(refuse("only one output can go to standard output (dest=-)")),
    }
    Ok(outputs)
}

/// The names the image gets in the local store.
pub(super) fn stored_names(outputs: &[OutputSpec]) -> Vec<Reference> {
    let mut names: Vec<Reference> = Vec::new();
    for output in outputs {
        if let OutputSpec::Image(image) = output
            && image.store
        {
            for name in &image.names {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}

/// The key/value fields of a spec not taken yet.
#[derive(Default)]
struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn take(&mut self, key: &str) -> Option<String> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(index).1)
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        self.take(key)
            .map(|value| parse_bool(&value).ok_or(format!("{key}={value}: expected true or false")))
            .transpose()
    }

    fn dest(&mut self) -> Result<Option<Destination>, String> {
        match self.take("dest").as_deref() {
            None => Ok(None),
            Some("") => Err("dest= is empty".into()),
            Some("-") => Ok(Some(Destination::Stdout)),
            Some(path) => Ok(Some(Destination::Path(PathBuf::from(path)))),
        }
    }

    fn names(&mut self) -> Result<Vec<Reference>, String> {
        let Some(value) = self.take("name") else {
            return Ok(Vec::new());
        };
        value
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.parse::<Reference>().map_err(|e| format!("name={n}: {e}")))
            .collect()
    }

    /// `compression`, `compression-level`, `force-compression`, `oci-mediatypes`.
    fn layers(&mut self, oci_default: bool) -> Result<LayerOptions, String> {
        let compression = match self.take("compression").as_deref() {
            None | Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some("uncompressed") => Compression::None,
            Some(other) => {
                return Err(format!(
                    "compression={other}: expected gzip, zstd or uncompressed"
                ));
            }
        };
        let level = match self.take("compression-level") {
            None => None,
            Some(value) => {
                let level: i32 = value
                    .parse()
                    .map_err(|_| format!("compression-level={value}: expected a number"))?;
                let range = match compression {
                    Compression::Zstd => 0..=22,
                    _ => 0..=9,
                };
                if !range.contains(&level) {
                    return Err(format!(
                        "compression-level={level}: {compression} takes {} to {}",
                        range.start(),
                        range.end()
                    ));
                }
                Some(level)
            }
        };
        Ok(LayerOptions {
            compression,
            level,
            force: self.bool("force-compression")?.unwrap_or(false),
            oci_media_types: Some(self.bool("oci-mediatypes")?.unwrap_or(oci_default)),
        })
    }
}

fn image_layers(oci: bool) -> LayerOptions {
    LayerOptions {
        oci_media_types: Some(oci),
        ..LayerOptions::default()
    }
}

fn image_output(kind: &str, attrs: &mut Attrs) -> Result<OutputSpec, String> {
    let registry = kind == "registry";
    let push = attrs.bool("push")?;
    if registry && push == Some(false) {
        return Err("type=registry always pushes (use type=image for the local store only)".into());
    }
    Ok(OutputSpec::Image(ImageOutput {
        names: attrs.names()?,
        store: !registry,
        push: registry || push.unwrap_or(false),
        layers: attrs.layers(true)?,
    }))
}

fn archive_output(kind: &str, attrs: &mut Attrs) -> Result<OutputSpec, String> {
    let format = if kind == "docker" {
        ArchiveFormat::Docker
    } else {
        ArchiveFormat::Oci
    };
    let tar = attrs.bool("tar")?.unwrap_or(true);
    let dest = match attrs.dest()? {
        Some(Destination::Stdout) if !tar => {
            return Err("tar=false writes a directory: dest=- is not one".into());
        }
        Some(dest) => dest,
        None => {
            return Err(format!(
                "type={kind} needs dest=FILE, dest=- or (with tar=false) dest=DIR"
            ));
        }
    };
    Ok(OutputSpec::Archive(ArchiveOutput {
        format,
        dest,
        tar,
        names: attrs.names()?,
        layers: attrs.layers(format == ArchiveFormat::Oci)?,
    }))
}

fn files_output(kind: &str, attrs: &mut Attrs) -> Result<OutputSpec, String> {
    match (kind, attrs.dest()?) {
        ("local", Some(Destination::Path(dest))) => Ok(OutputSpec::Local { dest }),
        ("local", Some(Destination::Stdout)) => {
            Err("type=local writes a directory: dest=- is not one".into())
        }
        ("local", None) => Err("type=local needs dest=DIR".into()),
        (_, Some(dest)) => Ok(OutputSpec::Tar { dest }),
        (_, None) => Err("type=tar needs dest=FILE or dest=-".into()),
    }
}

fn keys_of(kind: &str) -> &'static str {
    match kind {
        "image" | "registry" => {
            "name, push, compression, compression-level, force-compression, oci-mediatypes"
        }
        "oci" | "docker" => {
            "dest, tar, name, compression, compression-level, force-compression, oci-mediatypes"
        }
        _ => "dest",
    }
}

/// Go's `strconv.ParseBool`, which buildx uses.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One CSV record as Go's `encoding/csv` reads it (buildx parses specs so): fields split
/// by commas, a field in double quotes may hold commas and `""` for a quote.
fn csv_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous text after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field"),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> OutputSpec {
        OutputSpec::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn error(spec: &str) -> String {
        match OutputSpec::parse(spec) {
            Ok(parsed) => panic!("{spec} parsed as {parsed:?}"),
            Err(e) => {
                assert!(e.is_usage(), "{spec}: {e} is not a usage error");
                e.to_string()
            }
        }
    }

    fn name(n: &str) -> Reference {
        n.parse().unwrap()
    }

    #[test]
    fn shorthands() {
        assert_eq!(
            parse("out/dir"),
            OutputSpec::Local {
                dest: PathBuf::from("out/dir")
            }
        );
        assert_eq!(
            parse("-"),
            OutputSpec::Tar {
                dest: Destination::Stdout
            }
        );
        assert!(error("").contains("empty output"));
    }

    #[test]
    fn image_and_registry() {
        assert_eq!(parse("type=image"), OutputSpec::store());
        let OutputSpec::Image(image) = parse(
            r#"type=image,"name=a/b:1,c",push=true,compression=zstd,compression-level=19,force-compression=true"#,
        ) else {
            panic!("not an image output");
        };
        assert_eq!(image.names, vec![name("a/b:1"), name("c")]);
        assert!(image.store && image.push);
        assert_eq!(image.layers.compression, Compression::Zstd);
        assert_eq!(image.layers.level, Some(19));
        assert!(image.layers.force);
        assert_eq!(image.layers.oci_media_types, Some(true));
        let OutputSpec::Image(registry) = parse("type=registry,name=r/x,oci-mediatypes=false")
        else {
            panic!("not an image output");
        };
        assert!(!registry.store && registry.push);
        assert_eq!(registry.layers.oci_media_types, Some(false));
        assert!(error("type=registry,push=false").contains("always pushes"));
    }

    #[test]
    fn archives() {
        assert_eq!(
            parse("type=docker,dest=out.tar,name=app:1"),
            OutputSpec::Archive(ArchiveOutput {
                format: ArchiveFormat::Docker,
                dest: Destination::Path(PathBuf::from("out.tar")),
                tar: true,
                names: vec![name("app:1")],
                layers: image_layers(false),
            })
        );
        let OutputSpec::Archive(oci) = parse("type=oci,dest=layout,tar=false") else {
            panic!("not an archive");
        };
        assert!(!oci.tar);
        assert_eq!(oci.layers.oci_media_types, Some(true));
        let OutputSpec::Archive(stdout) = parse("TYPE=oci, DEST=-") else {
            panic!("not an archive");
        };
        assert_eq!(stdout.dest, Destination::Stdout);
        assert!(error("type=oci").contains("needs dest"));
        assert!(error("type=oci,dest=-,tar=false").contains("not one"));
    }

    #[test]
    fn local_and_tar() {
        assert_eq!(
            parse("type=local,dest=out"),
            OutputSpec::Local {
                dest: PathBuf::from("out")
            }
        );
        assert_eq!(
            parse("type=tar,dest=-"),
            OutputSpec::Tar {
                dest: Destination::Stdout
            }
        );
        assert!(error("type=local").contains("needs dest=DIR"));
        assert!(error("type=local,dest=-").contains("not one"));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(error("dest=out,name=x").contains("type= is required"));
        assert!(error("type=cacheonly").contains("unknown type"));
        assert!(
            error("type=local,dest=o,platform-split=true")
                .contains("does not take platform-split=")
        );
        assert!(error("type=image,push=maybe").contains("expected true or false"));
        assert!(error("type=image,compression=estargz").contains("expected gzip, zstd"));
        assert!(error("type=image,compression-level=x").contains("expected a number"));
        assert!(error("type=image,compression-level=12").contains("gzip takes 0 to 9"));
        assert!(
            error("type=image,compression=zstd,compression-level=23")
                .contains("zstd takes 0 to 22")
        );
        assert!(error("type=image,name=UPPER").contains("name=UPPER"));
        assert!(error("type=image,bare").contains("expected KEY=VALUE"));
        assert!(error(r#"type=image,"name=a"#).contains("not closed"));
    }

    #[test]
    fn push_and_load_combine_like_buildx() {
        assert_eq!(
            resolve_outputs(vec![], false, false),
            vec![OutputSpec::store()]
        );
        assert_eq!(
            resolve_outputs(vec![], true, false),
            vec![OutputSpec::registry()]
        );
        assert_eq!(
            resolve_outputs(vec![], false, true),
            vec![OutputSpec::store()]
        );
        assert_eq!(
            resolve_outputs(vec![], true, true),
            vec![OutputSpec::registry(), OutputSpec::store()]
        );
        let pushed = resolve_outputs(vec![OutputSpec::store()], true, false);
        assert!(matches!(&pushed[..], [OutputSpec::Image(i)] if i.store && i.push));
        let with_tar = resolve_outputs(vec![parse("-")], true, false);
        assert_eq!(with_tar, vec![parse("-"), OutputSpec::registry()]);
    }

    #[test]
    fn effective_outputs_take_the_tags_and_refuse_what_cannot_work() {
        let tags = vec![name("app:1")];
        let stream = OutputStream::new(std::io::sink());
        let outputs = effective(&[], &tags, None).unwrap();
        assert_eq!(stored_names(&outputs), tags);
        let outputs = effective(
            &[OutputSpec::registry(), parse("type=image,name=other")],
            &tags,
            None,
        )
        .unwrap();
        assert_eq!(stored_names(&outputs), vec![name("other")]);
        assert!(effective(&[OutputSpec::registry()], &[], None).is_err());
        assert!(effective(&[parse("-")], &[], None).is_err());
        assert!(effective(&[parse("-")], &[], Some(&stream)).is_ok());
        assert!(effective(&[parse("-"), parse("type=oci,dest=-")], &[], Some(&stream)).is_err());
    }
}
