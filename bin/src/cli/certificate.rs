//! `certificate list|add|remove|replace`. Certificate and key files are read here and their
//! contents sent: the proxy may not see the same files.

use std::{net::SocketAddr, path::Path};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use clap::Subcommand;
use sozu_command_lib::{
    request::{
        AddCertificate, CertificateAndKey, CertificateFilters, Fingerprint, Order,
        RemoveCertificate, ReplaceCertificate,
    },
    response::ResponseContent,
};

use super::{
    JsonFormat,
    client::{Client, content},
    table,
    tls_versions::{self, TlsVersionArg},
};

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Certificates of the state, by listener.
    List {
        #[arg(short, long, value_name = "FINGERPRINT")]
        fingerprint: Option<Fingerprint>,
        /// Only certificates with a name containing this.
        #[arg(short, long, value_name = "DOMAIN")]
        domain: Option<String>,
        /// Ask the workers rather than the main process's state.
        #[arg(short, long)]
        workers: bool,
    },
    Add {
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[arg(long, value_name = "FILE")]
        certificate: String,
        #[arg(long, value_name = "FILE")]
        certificate_chain: Option<String>,
        #[arg(long, value_name = "FILE")]
        key: String,
        #[arg(long, value_delimiter = ',', value_name = "VERSIONS")]
        tls_versions: Vec<TlsVersionArg>,
    },
    /// Remove a certificate, named by its file or its fingerprint.
    Remove {
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[arg(
            long,
            alias = "cert",
            value_name = "FILE",
            required_unless_present = "fingerprint"
        )]
        certificate: Option<String>,
        #[arg(
            short,
            long,
            value_name = "FINGERPRINT",
            conflicts_with = "certificate"
        )]
        fingerprint: Option<Fingerprint>,
    },
    /// Swap a certificate for a new one atomically.
    Replace {
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[arg(long, value_name = "FILE")]
        new_certificate: String,
        #[arg(long, value_name = "FILE")]
        new_certificate_chain: Option<String>,
        #[arg(long, value_name = "FILE")]
        new_key: String,
        #[arg(
            long,
            alias = "old-cert",
            value_name = "FILE",
            required_unless_present = "fingerprint"
        )]
        old_certificate: Option<String>,
        #[arg(
            short,
            long,
            value_name = "FINGERPRINT",
            conflicts_with = "old_certificate"
        )]
        fingerprint: Option<Fingerprint>,
        #[arg(long, value_delimiter = ',', value_name = "VERSIONS")]
        tls_versions: Vec<TlsVersionArg>,
    },
}

pub fn run(client: &mut Client, command: &CertificateCommand) -> anyhow::Result<()> {
    let order = match command {
        CertificateCommand::List {
            fingerprint,
            domain,
            workers,
        } => {
            let filters = CertificateFilters {
                fingerprint: fingerprint.clone(),
                domain: domain.clone(),
                // Sōzu prints the main state's certificates whole; its workers, summaries.
                full: client.json == Some(JsonFormat::Sozu) && !*workers,
            };
            return list(client, filters, *workers);
        }
        CertificateCommand::Add {
            address,
            certificate,
            certificate_chain,
            key,
            tls_versions,
        } => Order::AddCertificate(AddCertificate {
            address: *address,
            certificate: read(certificate, certificate_chain.as_deref(), key, tls_versions)?,
            allow_expired: false,
        }),
        CertificateCommand::Remove {
            address,
            certificate,
            fingerprint,
        } => Order::RemoveCertificate(RemoveCertificate {
            address: *address,
            fingerprint: fingerprint_of(certificate.as_deref(), fingerprint.as_ref())?,
        }),
        CertificateCommand::Replace {
            address,
            new_certificate,
            new_certificate_chain,
            new_key,
            old_certificate,
            fingerprint,
            tls_versions,
        } => Order::ReplaceCertificate(ReplaceCertificate {
            address: *address,
            new_certificate: read(
                new_certificate,
                new_certificate_chain.as_deref(),
                new_key,
                tls_versions,
            )?,
            old_fingerprint: fingerprint_of(old_certificate.as_deref(), fingerprint.as_ref())?,
            allow_expired: false,
        }),
    };
    client.order_and_print(order)
}

fn read_file(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(Path::new(path)).with_context(|| format!("cannot read {path}"))
}

fn read(
    certificate: &str,
    chain: Option<&str>,
    key: &str,
    versions: &[TlsVersionArg],
) -> anyhow::Result<CertificateAndKey> {
    Ok(CertificateAndKey {
        certificate: read_file(certificate)?,
        certificate_chain: match chain {
            Some(chain) => pem_blocks(&read_file(chain)?),
            None => Vec::new(),
        },
        key: read_file(key)?,
        versions: tls_versions::supported(versions),
        names: Vec::new(),
    })
}

/// The PEM blocks of a text, each from its BEGIN line to its END line.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = &mut current {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

/// The given fingerprint, or that of the first certificate of a PEM file.
fn fingerprint_of(
    file: Option<&str>,
    fingerprint: Option<&Fingerprint>,
) -> anyhow::Result<Fingerprint> {
    if let Some(fingerprint) = fingerprint {
        return Ok(fingerprint.clone());
    }
    let file = file.ok_or_else(|| anyhow!("name the certificate by its file or -f FINGERPRINT"))?;
    let text = read_file(file)?;
    let block = pem_blocks(&text)
        .into_iter()
        .find(|block| block.starts_with("-----BEGIN CERTIFICATE-----"))
        .ok_or_else(|| anyhow!("{file} holds no PEM certificate"))?;
    let base64: String = block
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64.trim())
        .with_context(|| format!("{file}: invalid PEM"))?;
    Ok(Fingerprint::of_der(&der))
}

fn list(client: &mut Client, filters: CertificateFilters, workers: bool) -> anyhow::Result<()> {
    let order = if workers {
        Order::QueryCertificatesFromWorkers(filters)
    } else {
        Order::QueryCertificatesFromTheState(filters)
    };
    let response = client.order(order)?;
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    // Several workers answer each with their own list: one row per worker and certificate.
    let (by_worker, contents) = match content(response)? {
        ResponseContent::WorkerResponses(answers) => (true, answers.into_iter().collect()),
        content => (false, vec![(String::new(), content)]),
    };
    let mut rows = Vec::new();
    for (worker, content) in contents {
        let ResponseContent::Certificates(certificates) = content else {
            bail!("unexpected answer");
        };
        rows.extend(certificates.iter().map(|certificate| {
            let mut row: Vec<String> = by_worker.then(|| worker.clone()).into_iter().collect();
            row.extend([
                certificate.address.to_string(),
                certificate.fingerprint.to_string(),
                certificate
                    .not_after
                    .map_or_else(String::new, |not_after| not_after.to_string()),
                certificate.names.join(","),
            ]);
            row
        }));
    }
    let columns = ["WORKER", "ADDRESS", "FINGERPRINT", "NOT AFTER", "NAMES"];
    table::print(&columns[usize::from(!by_worker)..], &rows)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_split() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("BBBB"));
    }
}
