//! Key-pair authentication: the JWT Snowflake accepts in place of a
//! password, signed RS256 with the user's private key by `jsonwebtoken`,
//! naming the public key by its fingerprint (SHA-256 of its DER
//! SubjectPublicKeyInfo, computed with `ring` and `simple_asn1`).

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use simple_asn1::{ASN1Block, oid};

/// How long a token is valid; Snowflake accepts at most an hour.
const LIFETIME_SECONDS: i64 = 59 * 60;

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// A JWT for `user` of `account` signed with the PEM `private_key`
/// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), issued at `now`
/// (seconds since 1970). The error says what is wrong with the key.
pub(super) fn jwt(account: &str, user: &str, private_key: &str, now: i64) -> Result<String, String> {
    let fingerprint = fingerprint(private_key)?;
    let qualified = format!(
        "{}.{}",
        account.split('.').next().unwrap_or(account).to_ascii_uppercase(),
        user.to_ascii_uppercase()
    );
    let claims = Claims {
        iss: format!("{qualified}.{fingerprint}"),
        sub: qualified,
        iat: now,
        exp: now + LIFETIME_SECONDS,
    };
    let key = EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|e| format!("the private_key: {e}"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

/// `SHA256:` and the base64 SHA-256 of the key's public half as DER
/// SubjectPublicKeyInfo: how Snowflake names the key (`RSA_PUBLIC_KEY_FP`).
fn fingerprint(private_key: &str) -> Result<String, String> {
    let parsed = pem::parse(private_key.trim()).map_err(|e| format!("the private_key is not PEM: {e}"))?;
    let pair = match parsed.tag() {
        "PRIVATE KEY" => ring::rsa::KeyPair::from_pkcs8(parsed.contents()),
        "RSA PRIVATE KEY" => ring::rsa::KeyPair::from_der(parsed.contents()),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "the private_key is encrypted; store it decrypted (openssl pkcs8 -topk8 -nocrypt) as a secret".into(),
            );
        }
        other => return Err(format!("the private_key is a PEM {other:?}, not an RSA private key")),
    }
    .map_err(|e| format!("the private_key is not a usable RSA key: {e}"))?;
    let pkcs1 = pair.public().as_ref().to_vec();
    let bits = pkcs1.len() * 8;
    let spki = ASN1Block::Sequence(
        0,
        vec![
            ASN1Block::Sequence(
                0,
                vec![
                    ASN1Block::ObjectIdentifier(0, oid!(1, 2, 840, 113549, 1, 1, 1)),
                    ASN1Block::Null(0),
                ],
            ),
            ASN1Block::BitString(0, bits, pkcs1),
        ],
    );
    let der = simple_asn1::to_der(&spki).map_err(|e| format!("cannot encode the public key: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    /// `openssl` with `args`, fed `input`; its standard output.
    fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl is installed");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    }

    /// A fresh RSA key made for the test (no key is committed): the
    /// private key in PKCS#8 PEM, the public key in PEM, and the
    /// fingerprint openssl computes for it.
    fn fresh_key() -> (String, String, String) {
        let private = openssl(
            &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            b"",
        );
        let public = openssl(&["pkey", "-pubout"], &private);
        let der = openssl(&["pkey", "-pubout", "-outform", "DER"], &private);
        let digest = openssl(&["dgst", "-sha256", "-binary"], &der);
        let fingerprint = openssl(&["base64", "-A"], &digest);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (
            text(private),
            text(public),
            format!("SHA256:{}", text(fingerprint).trim()),
        )
    }

    #[test]
    fn the_fingerprint_is_openssls() {
        let (key, _, expected) = fresh_key();
        assert_eq!(fingerprint(&key).unwrap(), expected);
    }

    #[test]
    fn the_token_is_signed_by_the_key_and_names_the_user() {
        let (key, public, expected) = fresh_key();
        let token = jwt("xy12345.eu-west-1", "etl_user", &key, 1_700_000_000).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims::<&str>(&[]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "XY12345.ETL_USER");
        assert_eq!(decoded.claims["iss"], format!("XY12345.ETL_USER.{expected}"));
        assert_eq!(decoded.claims["exp"], 1_700_000_000 + LIFETIME_SECONDS);
    }

    #[test]
    fn unusable_keys_are_explained() {
        assert!(jwt("a", "u", "not a key", 0).unwrap_err().contains("not PEM"));
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(jwt("a", "u", encrypted, 0).unwrap_err().contains("decrypted"));
    }
}
