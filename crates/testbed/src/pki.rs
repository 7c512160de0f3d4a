//! A throwaway certificate authority made at run time with `rcgen`, and a server
//! certificate per backend for that backend's names. Clients trust the CA (in process,
//! or `curl --cacert`); nothing is written anywhere but the testbed's own directory.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::Error;

/// The testbed's certificate authority.
#[derive(Debug)]
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// Makes a fresh CA key and self-signed CA certificate.
    pub fn new() -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Kracauer testbed CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Pki { issuer })
    }

    /// The CA certificate in PEM, for `curl --cacert`.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server configuration with a certificate for `names` signed by this CA.
    pub fn server_config(&self, names: &[&str]) -> Result<Arc<ServerConfig>, Error> {
        Ok(self.server_config_and_cert(names)?.0)
    }

    /// [`Pki::server_config`], with the certificate (DER) it serves.
    pub fn server_config_and_cert(
        &self,
        names: &[&str],
    ) -> Result<(Arc<ServerConfig>, Vec<u8>), Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("backend"),
        );
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)?;
        Ok((Arc::new(config), cert.der().to_vec()))
    }

    /// A TLS client configuration that trusts only this CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::clone(self.issuer.der()))?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
