//! The web page: `GET /` and the page's own paths (`/search`, `/deployments`,
//! `/deployments/{id}`) answer `index.html`, which routes in the browser; `GET /assets/{path}`
//! answers the files of `crates/flumen-server/assets/`.
//!
//! The files are in the binary (`build.rs` makes the table), so `cargo build` alone gives a
//! binary with the page and no Node toolchain is needed. Each answer carries an ETag of the
//! file's content and `Cache-Control: no-cache`: a browser keeps its copy and asks whether it
//! changed (304), so an upgrade is never half-seen. The Content-Security-Policy allows the
//! page's own scripts, styles and API only.
//!
//! While developing the page, `FLUMEN_PAGE_DIR=crates/flumen-server/assets` serves the files
//! from disk at each request instead, uncached.

use std::path::{Component, Path as FsPath};

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One file of the page, as the build script embedded it.
struct EmbeddedAsset {
    /// Its path under `assets/`, with `/` between folders.
    path: &'static str,
    bytes: &'static [u8],
    /// A quoted hash of `bytes`.
    etag: &'static str,
}

static ASSETS: &[EmbeddedAsset] = include!(concat!(env!("OUT_DIR"), "/page_assets.rs"));

/// Where the page's files are read from instead of the binary, while developing it.
const PAGE_DIR_VARIABLE: &str = "FLUMEN_PAGE_DIR";

/// What the page may load: itself and its API. No inline script or style, no other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; \
    form-action 'self'";

/// `index.html`, for every path the page routes itself.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).await
}

/// `/assets/{path}`.
pub(super) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers).await
}

async fn serve(path: &str, request: &HeaderMap) -> Response {
    if let Some(dir) = std::env::var_os(PAGE_DIR_VARIABLE) {
        return serve_from_disk(FsPath::new(&dir), path).await;
    }
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        return not_found(path);
    };
    let etag = HeaderValue::from_static(asset.etag);
    if is_fresh(request, asset.etag) {
        let mut answer = StatusCode::NOT_MODIFIED.into_response();
        answer.headers_mut().insert(header::ETAG, etag);
        return answer;
    }
    let mut answer = respond(path, asset.bytes.to_vec());
    answer.headers_mut().insert(header::ETAG, etag);
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    answer
}

/// True when the browser's copy (`If-None-Match`) is this version.
fn is_fresh(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

async fn serve_from_disk(dir: &FsPath, path: &str) -> Response {
    let inside = FsPath::new(path)
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    if !inside {
        return not_found(path);
    }
    match tokio::fs::read(dir.join(path)).await {
        Ok(bytes) => {
            let mut answer = respond(path, bytes);
            answer
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            answer
        }
        Err(_) => not_found(path),
    }
}

/// A file's answer: its bytes, its content type, and the headers every page answer has.
fn respond(path: &str, bytes: Vec<u8>) -> Response {
    let mut answer = bytes.into_response();
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    answer
}

fn not_found(path: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no page file {path}\n")).into_response()
}

/// The content type of a page file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_assets_folder_is_embedded_with_a_known_content_type() {
        let root = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let name = path.strip_prefix(&root).unwrap().to_str().unwrap();
                    on_disk.push(name.replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let embedded: Vec<&str> = ASSETS.iter().map(|asset| asset.path).collect();
        assert_eq!(embedded, on_disk);
        assert!(embedded.contains(&"index.html"));
        for asset in ASSETS {
            assert_ne!(
                content_type(asset.path),
                "application/octet-stream",
                "{}",
                asset.path
            );
            assert_eq!(std::fs::read(root.join(asset.path)).unwrap(), asset.bytes);
        }
    }

    #[test]
    fn an_etag_matches_itself_a_weak_copy_and_star_and_nothing_else() {
        let mut request = HeaderMap::new();
        assert!(!is_fresh(&request, "\"abc\""));
        request.insert(header::IF_NONE_MATCH, "\"x\", W/\"abc\"".parse().unwrap());
        assert!(is_fresh(&request, "\"abc\""));
        assert!(!is_fresh(&request, "\"ab\""));
        request.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(is_fresh(&request, "\"anything\""));
    }
}
