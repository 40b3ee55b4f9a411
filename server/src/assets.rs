//! The admin app's script, WASM and stylesheet, served from memory. They are read once at
//! start-up and named by their content (`/pkg/mailroom.<hash>.wasm`), so a browser keeps them
//! for a year (`immutable`) and a new build is a new name. Precompressed copies that the build
//! wrote next to them (`.br`, `.gz`, see `scripts/compress-site.sh`) are sent to browsers that
//! accept them. This route runs before the session and origin layers: a static file needs
//! neither, and they cost more than the file.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use std::{collections::HashMap, path::Path as FsPath, sync::Arc};

/// A year: the longest lifetime caches honour.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The kinds of file cargo-leptos writes for the app, with their types.
const KINDS: [(&str, &str); 3] =
    [("js", "text/javascript"), ("wasm", "application/wasm"), ("css", "text/css; charset=utf-8")];

struct Asset {
    content_type: &'static str,
    /// `immutable` under the hashed name; `no-cache` (revalidate with the ETag) under the plain one.
    cache_control: &'static str,
    etag: HeaderValue,
    identity: Bytes,
    brotli: Option<Bytes>,
    gzip: Option<Bytes>,
}

/// The site's assets by file name under `/pkg/`.
#[derive(Clone, Default)]
pub struct Assets {
    files: Arc<HashMap<String, Asset>>,
}

impl Assets {
    /// Reads `<output>.{js,wasm,css}` from the site's package directory. Answers the assets and
    /// the output name the pages should ask for (`mailroom.<hash>`), or the plain name and no
    /// assets when the site has not been built (the API still works).
    pub fn load(pkg_dir: &FsPath, output: &str) -> (Self, String) {
        let mut read = Vec::new();
        for (extension, content_type) in KINDS {
            let path = pkg_dir.join(format!("{output}.{extension}"));
            match std::fs::read(&path) {
                Ok(bytes) => read.push((extension, content_type, path, Bytes::from(bytes))),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "the site is not built: pages will load without their script and styles");
                    return (Self::default(), output.to_owned());
                }
            }
        }
        let mut hasher = Blake2b512::new();
        for (_, _, _, bytes) in &read {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        let hash = hex::encode(&hasher.finalize()[..8]);
        let hashed = format!("{output}.{hash}");
        let mut files = HashMap::new();
        let etag = HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a valid header value");
        for (extension, content_type, path, identity) in read {
            let (brotli, gzip) = (precompressed(&path, "br"), precompressed(&path, "gz"));
            let asset = |cache_control| Asset {
                content_type,
                cache_control,
                etag: etag.clone(),
                identity: identity.clone(),
                brotli: brotli.clone(),
                gzip: gzip.clone(),
            };
            files.insert(format!("{hashed}.{extension}"), asset(IMMUTABLE));
            files.insert(format!("{output}.{extension}"), asset("no-cache"));
        }
        (Self { files: Arc::new(files) }, hashed)
    }
}

/// `<path>.<suffix>` if the build wrote it after the file itself (an older one is stale).
fn precompressed(path: &FsPath, suffix: &str) -> Option<Bytes> {
    let compressed = path.with_extension(format!("{}.{suffix}", path.extension()?.to_str()?));
    let modified = |p: &FsPath| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&compressed)? < modified(path)? {
        tracing::warn!(path = %compressed.display(), "ignoring a compressed copy older than its file");
        return None;
    }
    std::fs::read(&compressed).ok().map(Bytes::from)
}

/// `GET /pkg/{file}`: the asset in the best encoding the browser accepts.
pub async fn serve(State(assets): State<Assets>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = assets.files.get(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let vary = [(header::VARY, HeaderValue::from_static("accept-encoding"))];
    if headers.get(header::IF_NONE_MATCH).is_some_and(|tag| tag == asset.etag) {
        return (StatusCode::NOT_MODIFIED, vary, [(header::ETAG, asset.etag.clone())]).into_response();
    }
    let accepted = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (body, encoding) = match (&asset.brotli, &asset.gzip) {
        (Some(br), _) if accepts(accepted, "br") => (br.clone(), Some("br")),
        (_, Some(gz)) if accepts(accepted, "gzip") => (gz.clone(), Some("gzip")),
        _ => (asset.identity.clone(), None),
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(asset.cache_control)),
            (header::ETAG, asset.etag.clone()),
        ],
        vary,
        Body::from(body),
    )
        .into_response();
    if let Some(encoding) = encoding {
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

/// Whether an `Accept-Encoding` value accepts `coding` (listed, and not with `q=0`).
fn accepts(header: &str, coding: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0)));
        name.eq_ignore_ascii_case(coding) && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_by_name_and_weight() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0, br", "gzip"));
        assert!(!accepts("", "gzip"));
        assert!(!accepts("x-gzip", "gzip"));
    }

    #[tokio::test]
    async fn assets_are_named_by_content_and_sent_compressed_when_accepted() {
        let dir = tempfile::tempdir().unwrap();
        for (extension, content) in [("js", "let a;"), ("wasm", "\0asm"), ("css", "body{}")] {
            std::fs::write(dir.path().join(format!("app.{extension}")), content).unwrap();
        }
        std::fs::write(dir.path().join("app.wasm.br"), "brotli bytes").unwrap();
        let (assets, name) = Assets::load(dir.path(), "app");
        assert!(name.starts_with("app.") && name.len() == "app.".len() + 16, "{name}");
        let get = |file: String, accept: &'static str| {
            let assets = assets.clone();
            async move {
                let mut headers = HeaderMap::new();
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
                serve(State(assets), Path(file), headers).await
            }
        };
        let wasm = get(format!("{name}.wasm"), "gzip, br").await;
        assert_eq!(wasm.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(wasm.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(wasm.headers()[header::CONTENT_TYPE], "application/wasm");
        let body = axum::body::to_bytes(wasm.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], b"brotli bytes");
        let plain = get(format!("{name}.wasm"), "gzip").await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none(), "no gzip copy: the file itself");
        let unhashed = get("app.css".into(), "br").await;
        assert_eq!(unhashed.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(get("app.d.ts".into(), "").await.status(), StatusCode::NOT_FOUND);
        let etag = unhashed.headers()[header::ETAG].clone();
        let mut revalidate = HeaderMap::new();
        revalidate.insert(header::IF_NONE_MATCH, etag);
        let unchanged = serve(State(assets.clone()), Path("app.css".into()), revalidate).await;
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED, "a revalidation of the same build sends no body");

        // A new build is a new name.
        std::fs::write(dir.path().join("app.css"), "body{color:red}").unwrap();
        assert_ne!(Assets::load(dir.path(), "app").1, name);
    }
}
