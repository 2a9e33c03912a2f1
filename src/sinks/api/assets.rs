//! The dashboard's files, compiled into the binary: the page needs nothing
//! from the internet (plant networks are often air-gapped) and nothing from
//! the disk next to the binary.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Asset {
            path,
            content_type,
            body,
            etag: OnceLock::new(),
        }
    }

    /// A validator for conditional requests: changes whenever the file does.
    pub fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.body.hash(&mut h);
            format!("\"{:016x}\"", h.finish())
        })
    }
}

pub static ASSETS: [Asset; 4] = [
    Asset::new(
        "/",
        "text/html; charset=utf-8",
        include_bytes!("dashboard/index.html"),
    ),
    Asset::new(
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/app.css"),
    ),
    Asset::new(
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    Asset::new(
        "/assets/favicon.svg",
        "image/svg+xml",
        include_bytes!("dashboard/favicon.svg"),
    ),
];

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for a in &ASSETS {
            let text = String::from_utf8_lossy(a.body);
            for bad in [
                "http://",
                "https://",
                "//cdn",
                "@import",
                "fonts.googleapis",
            ] {
                // The SVG namespace is an identifier, not a download.
                let hits = text
                    .match_indices(bad)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/"))
                    .count();
                assert_eq!(hits, 0, "{} mentions {bad}", a.path);
            }
        }
    }

    #[test]
    fn etags_differ_per_file() {
        assert_ne!(ASSETS[0].etag(), ASSETS[1].etag());
        assert!(find("/assets/app.js").is_some());
        assert!(find("/assets/../Cargo.toml").is_none());
    }
}
