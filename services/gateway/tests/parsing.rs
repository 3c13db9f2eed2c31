//! Property tests on the paths that read what callers send before they are trusted: bearer
//! tokens (static and service-account JWTs), client certificates (presented and forwarded),
//! token files, encryption configurations and sealed values. Any input gets an answer,
//! never a panic.

use std::sync::Arc;

use base64::Engine as _;
use navarch_gateway::auth::{AuthChain, FRONT_PROXY_USER, TokenFile};
use navarch_gateway::encryption::Encryption;
use navarch_gateway::tokens::TokenIssuer;
use proptest::prelude::*;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Fixture {
    chain: AuthChain,
    issuer: Arc<TokenIssuer>,
    proxy_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// One CA and issuer for every case (creating them is the slow part).
fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(make_fixture);
    &FIXTURE
}

fn make_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = navarch_pki::ClusterPki::load_or_create(dir.path(), &[]).unwrap();
    let issuer = Arc::new(TokenIssuer::new(&pki.signing_key().unwrap()).unwrap());
    let tokens = TokenFile::parse("t0k3n,admin,1,\"system:masters\"\n").unwrap();
    let chain = AuthChain::new(vec![Arc::new(tokens), issuer.clone()])
        .with_forwarded_certificates(pki.client_verifier().unwrap());
    let (cert, _) = pki
        .issue_client_cert(FRONT_PROXY_USER, &[], std::time::Duration::from_secs(60))
        .unwrap();
    let proxy_der = navarch_pki::pem_to_der(&cert).unwrap();
    Fixture {
        chain,
        issuer,
        proxy_der,
        _dir: dir,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_authorization_header_is_answered(header in ".{0,200}") {
        let f = fixture();
        let got = f.chain.authenticate(None, None, Some(&header));
        prop_assert!(got.is_err() || header.trim_start_matches("Bearer ").trim() == "t0k3n");
    }

    #[test]
    fn jwt_shaped_garbage_never_authenticates(
        head in proptest::collection::vec(any::<u8>(), 0..64),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        json in "\\{\"alg\":\"(ES256|none|HS256|RS256)\"(,\"typ\":\"JWT\")?\\}",
    ) {
        let f = fixture();
        for token in [
            format!("{}.{}.{}", b64url(&head), b64url(&body), b64url(&sig)),
            format!("{}.{}.{}", b64url(json.as_bytes()), b64url(&body), b64url(&sig)),
            format!("{}.{}.", b64url(json.as_bytes()), b64url(&body)),
        ] {
            prop_assert!(f.issuer.verify(&token).is_none());
            let header = format!("Bearer {token}");
            prop_assert!(f.chain.authenticate(None, None, Some(&header)).is_err());
        }
    }

    #[test]
    fn any_certificate_bytes_are_refused_or_read(der in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = navarch_pki::subject(&der);
        let f = fixture();
        // Presented on the connection (the handshake verified it in real life): read safely.
        let _ = f.chain.authenticate(Some(&der), None, None);
        // Forwarded by the front proxy: verified, so garbage never authenticates.
        let forwarded = base64::engine::general_purpose::STANDARD.encode(&der);
        prop_assert!(f.chain.authenticate(Some(&f.proxy_der), Some(&forwarded), None).is_err());
    }

    #[test]
    fn truncated_and_flipped_certificates_are_refused_when_forwarded(cut in 0usize..2000, flip in 0usize..2000) {
        let f = fixture();
        let mut der = f.proxy_der.clone();
        if flip < der.len() {
            der[flip] ^= 0x5a;
        }
        der.truncate(cut.min(der.len()));
        let forwarded = base64::engine::general_purpose::STANDARD.encode(&der);
        let got = f.chain.authenticate(Some(&f.proxy_der), Some(&forwarded), None);
        // Only the unmodified certificate (of the proxy itself) could pass verification.
        if der != f.proxy_der {
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn any_token_file_is_parsed_or_refused(text in "(([a-z0-9\",]{0,12}),?){0,6}(\n(([a-z0-9\",]{0,12}),?){0,6}){0,5}") {
        let _ = TokenFile::parse(&text);
    }

    #[test]
    fn any_encryption_configuration_is_parsed_or_refused(text in ".{0,300}") {
        let _ = Encryption::parse(&text);
        let _ = Encryption::parse(&format!("kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: k\n        secret: {text}\n"));
    }

    #[test]
    fn any_stored_bytes_open_or_fail(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let e = Encryption::parse(&Encryption::generate()).unwrap();
        let key = "/registry/core/secrets/ns/s";
        let mut sealed = b"k8s:enc:aesgcm:v1:key1:".to_vec();
        sealed.extend_from_slice(&tail);
        prop_assert!(e.open(key, sealed.into()).is_err());
        let _ = e.open(key, tail.clone().into());
    }
}
