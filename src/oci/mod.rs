//! OCI data types shared by every layer: digests, media types, image references,
//! platforms, and re-exports of the `oci-spec` image types.
//!
//! L0: imports nothing of kiln.

mod digest;
mod error;
pub mod media_type;
mod platform;
mod reference;
pub mod time;

pub use digest::{Algorithm, Digest, DigestReader, DigestWriter, Hasher, chain_id};
pub use error::{DigestError, PlatformError, ReferenceError};
pub use media_type::Compression;
pub use platform::Platform;
pub use reference::Reference;

pub use oci_spec::image::{
    Config, Descriptor, DescriptorBuilder, History, ImageConfiguration, ImageIndex,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, RootFs,
};

/// The annotation that names a manifest inside an OCI image layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
