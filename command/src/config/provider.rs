//! `[provider.etcd]`: where a node of a fleet reads its routing state, an etcd v3 cluster, and
//! how it names itself there. The main process watches the prefix and applies what it holds as
//! orders (`doc/fleet.md`).

use serde::{Deserialize, Serialize};

use super::{
    Loader,
    document::{Field, Table},
    error::ConfigError,
};

const PROVIDER_KEYS: &[&str] = &["etcd"];

const ETCD_KEYS: &[&str] = &[
    "endpoints",
    "prefix",
    "node",
    "ca_certificate",
    "certificate",
    "key",
    "user",
    "password",
];

/// The `[provider.etcd]` section. TLS files are read at load time: the settings carry PEM
/// contents, never paths.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdProvider {
    /// `http://HOST:PORT` or `https://HOST:PORT`, all with the same scheme.
    pub endpoints: Vec<String>,
    /// Every key of the fleet starts with it; it ends with `/`.
    pub prefix: String,
    /// This node's name in `<prefix>nodes/<node>` and `<prefix>status/<node>`.
    pub node: String,
    /// The authority that signed the endpoints' certificates, in PEM (https endpoints).
    pub ca_certificate: Option<String>,
    /// The client certificate and its key, in PEM, for endpoints that ask for one.
    pub client_identity: Option<(String, String)>,
    /// The user name and password of etcd's authentication.
    pub credentials: Option<(String, String)>,
}

/// The `[provider]` table, whose one provider so far is etcd.
pub(super) fn read(
    loader: &mut Loader,
    field: Field<'_, '_>,
) -> Result<Option<EtcdProvider>, ConfigError> {
    let mut provider = field.table("[provider]")?;
    loader.check_keys(&mut provider, &[PROVIDER_KEYS]);
    let etcd = provider
        .field("etcd")
        .map(|field| etcd(loader, field))
        .transpose()?;
    provider.unused()?;
    Ok(etcd)
}

fn etcd(loader: &mut Loader, field: Field<'_, '_>) -> Result<EtcdProvider, ConfigError> {
    let mut table = field.table("[provider.etcd]")?;
    loader.check_keys(&mut table, &[ETCD_KEYS]);
    let endpoints = endpoints(table.required("endpoints")?)?;
    let prefix = table.required("prefix")?;
    let prefix_text = prefix.string()?;
    if !prefix_text.ends_with('/') || prefix_text.chars().any(char::is_whitespace) {
        return Err(prefix.invalid("a key prefix ending with `/`, like \"/sozu/\""));
    }
    let node = table.required("node")?;
    let node_text = node.string()?;
    if node_text.is_empty()
        || !node_text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(node.invalid("a node name of letters, digits, `-`, `_` and `.`"));
    }
    let is_tls = endpoints
        .first()
        .is_some_and(|endpoint| endpoint.starts_with("https://"));
    let ca_certificate = match table.field("ca_certificate") {
        Some(field) if !is_tls => {
            return Err(field.requires("https:// endpoints"));
        }
        Some(field) => Some(loader.files.read(field)?.1.to_string()),
        None => None,
    };
    let client_identity = client_identity(loader, &mut table, is_tls)?;
    let credentials = match (table.field("user"), table.field("password")) {
        (Some(user), Some(password)) => {
            let name = user.string()?;
            if name.is_empty() {
                return Err(user.invalid("a user name"));
            }
            Some((name.to_string(), password.string()?.to_string()))
        }
        (Some(user), None) => return Err(user.requires("`password`")),
        (None, Some(password)) => return Err(password.requires("`user`")),
        (None, None) => None,
    };
    table.unused()?;
    Ok(EtcdProvider {
        endpoints,
        prefix: prefix_text.to_string(),
        node: node_text.to_string(),
        ca_certificate,
        client_identity,
        credentials,
    })
}

/// At least one `http://` or `https://` URL with a host and a port, all with one scheme.
fn endpoints(field: Field<'_, '_>) -> Result<Vec<String>, ConfigError> {
    let expected = "a non-empty array of URLs with one scheme, like [\"http://127.0.0.1:2379\"]";
    let endpoints = field.strings().map_err(|_| field.invalid(expected))?;
    let scheme = |endpoint: &String| -> Option<String> {
        let (scheme, rest) = endpoint.split_once("://")?;
        let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
        let valid = matches!(scheme, "http" | "https")
            && !host.is_empty()
            && !host.contains('/')
            && port.parse::<u16>().is_ok_and(|port| port != 0);
        valid.then(|| scheme.to_string())
    };
    let schemes: Option<Vec<String>> = endpoints.iter().map(scheme).collect();
    match schemes {
        Some(schemes)
            if !schemes.is_empty() && schemes.iter().all(|s| Some(s) == schemes.first()) =>
        {
            Ok(endpoints)
        }
        _ => Err(field.invalid(expected)),
    }
}

/// `certificate` and `key` go together, and need TLS.
fn client_identity(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    is_tls: bool,
) -> Result<Option<(String, String)>, ConfigError> {
    match (table.field("certificate"), table.field("key")) {
        (Some(certificate), Some(key)) => {
            if !is_tls {
                return Err(certificate.requires("https:// endpoints"));
            }
            let certificate = loader.files.read(certificate)?.1.to_string();
            let key = loader.files.read(key)?.1.to_string();
            Ok(Some((certificate, key)))
        }
        (Some(certificate), None) => Err(certificate.requires("`key`, the client key")),
        (None, Some(key)) => Err(key.requires("`certificate`, the client certificate")),
        (None, None) => Ok(None),
    }
}

impl std::fmt::Debug for EtcdProvider {
    /// Everything but the client key and the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProvider")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .field("ca_certificate", &self.ca_certificate.is_some())
            .field("client_identity", &self.client_identity.is_some())
            .field(
                "user",
                &self.credentials.as_ref().map(|(user, _)| user.as_str()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> Result<Option<super::EtcdProvider>, String> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        Config::parse(text, &fixtures)
            .map(|(config, _)| config.etcd)
            .map_err(|errors| errors.to_string())
    }

    #[test]
    fn etcd_section_is_read_with_its_files() {
        let etcd = parse(
            r#"
[provider.etcd]
endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
prefix = "/sozu/"
node = "edge-1"
ca_certificate = "certificate.pem"
certificate = "localhost.pem"
key = "localhost.key"
user = "sozu"
password = "secret"
"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(etcd.endpoints.len(), 2);
        assert_eq!(etcd.prefix, "/sozu/");
        assert_eq!(etcd.node, "edge-1");
        assert!(etcd.ca_certificate.unwrap().contains("BEGIN CERTIFICATE"));
        let (certificate, key) = etcd.client_identity.unwrap();
        assert!(certificate.contains("BEGIN CERTIFICATE"));
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(
            etcd.credentials,
            Some(("sozu".to_string(), "secret".to_string()))
        );
    }

    #[test]
    fn no_provider_section_means_no_etcd() {
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn mistakes_name_the_key_and_the_line() {
        let cases = [
            (
                "endpoints = []\nprefix = \"/s/\"\nnode = \"a\"",
                "`endpoints` at line 3",
            ),
            (
                "endpoints = [\"http://a:1\", \"https://b:2\"]\nprefix = \"/s/\"\nnode = \"a\"",
                "`endpoints` at line 3",
            ),
            (
                "endpoints = [\"tcp://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"",
                "`endpoints` at line 3",
            ),
            (
                "endpoints = [\"http://a:1\"]\nprefix = \"/s\"\nnode = \"a\"",
                "`prefix` at line 4",
            ),
            (
                "endpoints = [\"http://a:1\"]\nprefix = \"/s/\"\nnode = \"a/b\"",
                "`node` at line 5",
            ),
            (
                "endpoints = [\"http://a:1\"]\nprefix = \"/s/\"",
                "missing key `node` in [provider.etcd] at line 2",
            ),
            (
                "endpoints = [\"http://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"\nuser = \"u\"",
                "`user` at line 6 requires `password`",
            ),
            (
                "endpoints = [\"http://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"\n\
                 ca_certificate = \"certificate.pem\"",
                "`ca_certificate` at line 6 requires https:// endpoints",
            ),
            (
                "endpoints = [\"https://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"\n\
                 certificate = \"localhost.pem\"",
                "`certificate` at line 6 requires `key`",
            ),
            (
                "endpoints = [\"https://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"\n\
                 ca_certificate = \"missing.pem\"",
                "cannot read",
            ),
            (
                "endpoints = [\"http://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"\nnod = \"b\"",
                "unknown key `nod` in [provider.etcd] at line 6 (did you mean `node`?)",
            ),
        ];
        for (section, expected) in cases {
            let text = format!("\n[provider.etcd]\n{section}\n");
            let message = parse(&text).unwrap_err();
            assert!(message.contains(expected), "{expected:?} not in {message}");
        }
    }

    #[test]
    fn unknown_provider_is_named() {
        let message = parse("[provider.consul]\naddress = \"x\"\n").unwrap_err();
        assert!(
            message.contains("unknown key `consul` in [provider]"),
            "{message}"
        );
    }

    #[test]
    fn debug_leaves_secrets_out() {
        let etcd = parse(
            "[provider.etcd]\nendpoints = [\"http://a:1\"]\nprefix = \"/s/\"\nnode = \"a\"\n\
             user = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap()
        .unwrap();
        assert!(!format!("{etcd:?}").contains("hunter2"));
    }
}
