//! Who an agent is: the subject of the client certificate it presented during the TLS handshake.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The agent identity for a certificate: its subject common name, or the whole subject when it
/// has no CN. `None` when the certificate cannot be parsed (the handshake already verified it,
/// so this does not happen with a certificate our CA signed).
pub fn from_certificate_der(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    if let Some(cn) = subject.iter_common_name().next() {
        if let Ok(s) = cn.as_str() {
            return Some(s.to_string());
        }
    }
    Some(subject.to_string())
}
