//! The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802,
//! RFC 7677), checked against the stored verifier (StoredKey, ServerKey) as
//! PostgreSQL does, so that the stored record is not enough to log in.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The mechanism without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The mechanism with `tls-server-end-point` channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

const CHANNEL_BINDING_TYPE: &str = "tls-server-end-point";

/// What the server checks a login against.
#[derive(Clone)]
pub struct Verifier {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    /// False for a made-up verifier of an unknown user: its exchange looks
    /// the same but always fails.
    pub exists: bool,
}

/// Why an exchange failed (for the server log; clients get one message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding: {0}")]
    ChannelBinding(&'static str),
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
}

/// An exchange after the server-first message, waiting for client-final.
pub struct AwaitingClientFinal {
    verifier: Verifier,
    /// The base64 `c=` value the client must send back.
    expected_binding: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// Answers a client-first message. `mechanism` is the one the client chose;
/// `binding` is the `tls-server-end-point` hash when the connection is TLS
/// with a certificate that supports channel binding (SCRAM-SHA-256-PLUS was
/// offered).
pub fn server_first(
    mechanism: &str,
    client_first: &[u8],
    binding: Option<&[u8]>,
    verifier: Verifier,
) -> Result<(String, AwaitingClientFinal), ScramError> {
    let message = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (flag, rest) = message.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
    if !authzid.is_empty() {
        return Err(ScramError::Malformed("authorization identities are not supported"));
    }
    let plus = mechanism == SCRAM_SHA_256_PLUS;
    let binding_data: &[u8] = match (flag, plus) {
        ("n", false) => &[],
        // The client could bind but believes the server cannot: a downgrade
        // when the server offered SCRAM-SHA-256-PLUS.
        ("y", false) if binding.is_none() => &[],
        ("y", false) => {
            return Err(ScramError::ChannelBinding(
                "client did not use the offered channel binding",
            ));
        }
        (flag, true) if flag.strip_prefix("p=") == Some(CHANNEL_BINDING_TYPE) => {
            binding.ok_or(ScramError::ChannelBinding("not available on this connection"))?
        }
        (_, true) => {
            return Err(ScramError::ChannelBinding(
                "SCRAM-SHA-256-PLUS needs tls-server-end-point",
            ));
        }
        _ => {
            return Err(ScramError::ChannelBinding(
                "binding requested without SCRAM-SHA-256-PLUS",
            ));
        }
    };
    let mut attributes = bare.split(',');
    let first = attributes.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::Malformed("mandatory extensions are not supported"));
    }
    if !first.starts_with("n=") {
        return Err(ScramError::Malformed("no user name attribute"));
    }
    let client_nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
        .ok_or(ScramError::Malformed("no nonce"))?;
    let nonce = format!("{client_nonce}{}", BASE64.encode(rand::random::<[u8; 18]>()));
    let server_first = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&verifier.salt),
        verifier.iterations
    );
    let mut header = format!("{flag},,").into_bytes();
    header.extend_from_slice(binding_data);
    Ok((
        server_first.clone(),
        AwaitingClientFinal {
            verifier,
            expected_binding: BASE64.encode(header),
            nonce,
            client_first_bare: bare.to_owned(),
            server_first,
        },
    ))
}

impl AwaitingClientFinal {
    /// Checks the client's proof; returns the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let message = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if binding != self.expected_binding {
            return Err(ScramError::ChannelBinding("mismatch"));
        }
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != self.verifier.stored_key.len() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let client_signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        let matches: bool = Sha256::digest(&client_key)
            .as_slice()
            .ct_eq(&self.verifier.stored_key)
            .into();
        match (self.verifier.exists, matches) {
            (false, _) => Err(ScramError::UnknownUser),
            (true, false) => Err(ScramError::WrongPassword),
            (true, true) => Ok(format!(
                "v={}",
                BASE64.encode(hmac_sha256(&self.verifier.server_key, &auth_message))
            )),
        }
    }
}

/// `HMAC-SHA-256(key, message)`.
pub fn hmac_sha256(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn rfc_7677_example_is_accepted_and_a_wrong_proof_is_not() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = pgwire::api::auth::sasl::scram::gen_salted_password("pencil", &salt, 4096);
        let credentials = sluice_catalog::AdminCredentials::from_salted_password("user", &salt, 4096, &salted);
        let verifier = Verifier {
            salt,
            iterations: 4096,
            stored_key: hex::decode(&credentials.stored_key).unwrap(),
            server_key: hex::decode(&credentials.server_key).unwrap(),
            exists: true,
        };
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let exchange = |verifier: Verifier| {
            let (_, mut waiting) = server_first(SCRAM_SHA_256, client_first, None, verifier).unwrap();
            // Replay the RFC's server nonce so its proof applies.
            waiting.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
            waiting.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", waiting.nonce);
            waiting
        };
        let final_message = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            exchange(verifier.clone()).finish(final_message).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut wrong = final_message.to_vec();
        let last = wrong.len() - 2;
        wrong[last] = b'A';
        assert_eq!(
            exchange(verifier.clone()).finish(&wrong),
            Err(ScramError::WrongPassword)
        );
        let unknown = Verifier {
            exists: false,
            ..verifier
        };
        assert_eq!(exchange(unknown).finish(final_message), Err(ScramError::UnknownUser));
    }

    #[test]
    fn channel_binding_cannot_be_downgraded() {
        let verifier = Verifier {
            salt: vec![1],
            iterations: 4096,
            stored_key: vec![0; 32],
            server_key: vec![0; 32],
            exists: true,
        };
        let offered = Some(&[9u8; 32][..]);
        assert!(server_first(SCRAM_SHA_256, b"y,,n=,r=abc", offered, verifier.clone()).is_err());
        assert!(server_first(SCRAM_SHA_256, b"y,,n=,r=abc", None, verifier.clone()).is_ok());
        assert!(server_first(SCRAM_SHA_256_PLUS, b"n,,n=,r=abc", offered, verifier.clone()).is_err());
        let (_, waiting) = server_first(
            SCRAM_SHA_256_PLUS,
            b"p=tls-server-end-point,,n=,r=abc",
            offered,
            verifier,
        )
        .unwrap();
        let mut expected = b"p=tls-server-end-point,,".to_vec();
        expected.extend_from_slice(&[9u8; 32]);
        assert_eq!(waiting.expected_binding, BASE64.encode(expected));
    }
}
