//! Answers sent instead of a backend's: the pages that replace the built-in ones on a listener
//! or a cluster, and the fixed answer of an answer frontend.

use std::collections::BTreeMap;

use super::{
    Loader,
    document::{Field, Table},
    error::ConfigError,
};
use crate::{
    answer::{self, CUSTOM_STATUSES},
    request::FixedAnswer,
    rules,
};

/// Sōzu's per-status keys of listeners, each naming a file; the code is the key's suffix.
pub const LISTENER_LEGACY_KEYS: &[&str] = &[
    "answer_301",
    "answer_400",
    "answer_401",
    "answer_404",
    "answer_408",
    "answer_413",
    "answer_421",
    "answer_429",
    "answer_502",
    "answer_503",
    "answer_504",
    "answer_507",
];

/// Sōzu's per-status key of clusters.
pub(super) const CLUSTER_LEGACY_KEYS: &[&str] = &["answer_503"];

const FIXED_ANSWER_KEYS: &[&str] = &["status", "body", "file", "headers"];

/// The pages of a listener or a cluster by status code: the `legacy` keys name files, and the
/// `answers` map holds bodies or `file://` paths.
pub(super) fn custom_answers(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    legacy: &[&'static str],
) -> Result<BTreeMap<u16, String>, ConfigError> {
    let mut answers = BTreeMap::new();
    let mut legacy_keys = BTreeMap::new();
    for &key in legacy {
        if let Some(field) = table.field(key) {
            let Some(code) = legacy_code(key) else {
                return Err(field.invalid("a key answer_NNN with NNN a status code"));
            };
            let (_, contents) = loader.files.read(field)?;
            check_answer(field, code, &contents)?;
            answers.insert(code, contents.to_string());
            legacy_keys.insert(code, key);
        }
    }
    let Some(field) = table.field("answers") else {
        return Ok(answers);
    };
    let map = field.table("`answers`")?;
    for (code_text, value) in map.entries() {
        let code = code_text
            .parse::<u16>()
            .ok()
            .filter(|code| CUSTOM_STATUSES.contains(code))
            .ok_or_else(|| ConfigError::UnknownKey {
                key: code_text.to_string(),
                section: "`answers`".to_string(),
                line: value.line(),
                suggestion: None,
                expected: CUSTOM_STATUSES.map(|code| code.to_string()).join(", "),
            })?;
        if let Some(legacy_key) = legacy_keys.get(&code) {
            return Err(ConfigError::Exclusive {
                key: format!("answers.{code}"),
                other: legacy_key.to_string(),
                line: value.line(),
            });
        }
        let text = value.string()?;
        let contents = match text.strip_prefix("file://") {
            Some("") => return Err(value.invalid("a body, or file:// followed by a path")),
            Some(path) => {
                let path = loader.files.resolve(path);
                loader.files.read_path(&path, value)?.to_string()
            }
            None => text.to_string(),
        };
        check_answer(value, code, &contents)?;
        answers.insert(code, contents);
    }
    Ok(answers)
}

/// Refuses an answer the proxy could not send as it is (see [`crate::answer`]).
fn check_answer(field: Field<'_, '_>, code: u16, text: &str) -> Result<(), ConfigError> {
    answer::parse(code, text)
        .map(|_| ())
        .map_err(|error| field.invalid(format!("a custom answer: {error}")))
}

/// The status code of an `answer_NNN` key.
fn legacy_code(key: &str) -> Option<u16> {
    key.strip_prefix("answer_")?.parse().ok()
}

/// The `answer` of an answer frontend: a status, headers, and a body written inline (`body`)
/// or read from a file (`file`); neither means an empty body.
pub(super) fn fixed_answer(
    loader: &mut Loader,
    field: Field<'_, '_>,
) -> Result<FixedAnswer, ConfigError> {
    let mut table = field.table("`answer`")?;
    loader.check_keys(&mut table, &[FIXED_ANSWER_KEYS]);
    let status = table.required("status")?.number(&rules::ANSWER_STATUS)?;
    let body = match (table.field("body"), table.field("file")) {
        (Some(body), None) => answer_body(body, body.string()?)?,
        (None, Some(file)) => answer_body(file, &loader.files.read(file)?.1)?,
        (Some(body), Some(_)) => {
            return Err(ConfigError::Exclusive {
                key: "body".to_string(),
                other: "file".to_string(),
                line: body.line(),
            });
        }
        (None, None) => String::new(),
    };
    let headers = table.with("headers", header_pairs)?.unwrap_or_default();
    table.unused()?;
    Ok(FixedAnswer {
        status,
        headers,
        body,
    })
}

/// The body of an answer frontend, at most [`rules::MAX_ANSWER`] bytes.
fn answer_body(field: Field<'_, '_>, body: &str) -> Result<String, ConfigError> {
    if body.len() > rules::MAX_ANSWER {
        return Err(field.invalid(format!("a body of at most {} bytes", rules::MAX_ANSWER)));
    }
    Ok(body.to_string())
}

/// `[["Name", "value"], …]`.
fn header_pairs(field: Field<'_, '_>) -> Result<Vec<(String, String)>, ConfigError> {
    let expected = "[name, value] pairs of strings, like [[\"Content-Type\", \"text/html\"]]";
    field
        .items()?
        .into_iter()
        .map(|item| {
            let pair = item.items().map_err(|_| field.invalid(expected))?;
            let [name, value] = pair.as_slice() else {
                return Err(item.invalid(expected));
            };
            let name = name.string().map_err(|_| item.invalid(expected))?;
            let value = value.string().map_err(|_| item.invalid(expected))?;
            answer::check_header_name(name).map_err(|rule| item.invalid(rule))?;
            rules::HEADER_VALUE
                .check(value)
                .map_err(|rule| item.invalid(rule))?;
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legacy_key_names_a_replaceable_status() {
        for key in LISTENER_LEGACY_KEYS.iter().chain(CLUSTER_LEGACY_KEYS) {
            let code = legacy_code(key);
            assert!(
                code.is_some_and(|code| CUSTOM_STATUSES.contains(&code)),
                "{key}"
            );
        }
    }
}
