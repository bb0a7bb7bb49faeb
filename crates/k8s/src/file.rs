//! The static metadata file: Kubernetes objects in YAML, as `kubectl get -o yaml` prints them
//! (one object per document, or a `kind: List` with `items`), standing in for the API when
//! there is no cluster to ask.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::objects::Object;

/// Why a metadata file was refused: the file, and which object in it.
#[derive(Debug, thiserror::Error)]
pub enum MetadataFileError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: document {document}: not YAML: {source}", path.display())]
    Yaml {
        path: PathBuf,
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}: document {document}: {object}: {detail}", path.display())]
    Object {
        path: PathBuf,
        document: usize,
        /// `Kind namespace/name`, or what is known of it.
        object: String,
        detail: String,
    },
}

/// `Kind namespace/name` from a raw value, as far as it has those fields.
fn describe(value: &serde_json::Value) -> String {
    let kind = value["kind"].as_str().unwrap_or("<no kind>");
    let name = value["metadata"]["name"].as_str().unwrap_or("<unnamed>");
    match value["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Parses the objects in `text` (read from `path`, which names errors). Kinds Nightjar does
/// not index are skipped; an indexed kind that does not decode is an error.
pub fn parse_metadata(path: &Path, text: &str) -> Result<Vec<Object>, MetadataFileError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        let value =
            serde_yaml::Value::deserialize(document).map_err(|source| MetadataFileError::Yaml {
                path: path.to_path_buf(),
                document: document_number,
                source,
            })?;
        if value.is_null() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::to_value(&value).map_err(|e| MetadataFileError::Object {
                path: path.to_path_buf(),
                document: document_number,
                object: "<document>".into(),
                detail: e.to_string(),
            })?;
        let items = if value["kind"] == "List" {
            match value.get("items").and_then(|i| i.as_array()) {
                Some(items) => items.clone(),
                None => {
                    return Err(MetadataFileError::Object {
                        path: path.to_path_buf(),
                        document: document_number,
                        object: "List".into(),
                        detail: "a List needs an items array".into(),
                    })
                }
            }
        } else {
            vec![value]
        };
        for item in items {
            let object = describe(&item);
            if item.get("kind").and_then(|k| k.as_str()).is_none() {
                return Err(MetadataFileError::Object {
                    path: path.to_path_buf(),
                    document: document_number,
                    object,
                    detail: "no kind".into(),
                });
            }
            match Object::from_value(item) {
                Ok(Some(o)) => objects.push(o),
                Ok(None) => {}
                Err(e) => {
                    return Err(MetadataFileError::Object {
                        path: path.to_path_buf(),
                        document: document_number,
                        object,
                        detail: e.to_string(),
                    })
                }
            }
        }
    }
    Ok(objects)
}

/// Reads and parses a metadata file.
pub fn load_metadata(path: &Path) -> Result<Vec<Object>, MetadataFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| MetadataFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_metadata(path, &text)
}
