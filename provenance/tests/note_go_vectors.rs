//! Known-answer tests for the C2SP signed-note format against the Go reference
//! implementation (golang.org/x/mod/sumdb/note, note_test.go / package docs example).

use omega_provenance::b64;
use omega_provenance::note::{LogKey, VerifierKey};

const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn go_seed() -> [u8; 32] {
    // PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>; the base64 contains '+'.
    let b = SKEY.splitn(5, '+').nth(4).unwrap();
    let raw = b64::decode(b.as_bytes()).unwrap();
    assert_eq!(raw[0], 1);
    raw[1..].try_into().unwrap()
}

#[test]
fn signs_the_go_example_byte_for_byte() {
    let k = LogKey::from_seed("PeterNeumann", go_seed()).unwrap();
    assert_eq!(k.verifier().encode(), VKEY);
    assert_eq!(k.sign_note(TEXT), NOTE);
}

#[test]
fn verifies_the_go_example() {
    let vk = VerifierKey::parse(VKEY).unwrap();
    assert_eq!(vk.verify_note(NOTE).unwrap(), TEXT);
    assert!(
        vk.verify_note(&NOTE.replace("cryptography", "cryptographY"))
            .is_err()
    );
}

#[test]
fn parses_go_and_transparency_dev_keys() {
    // From transparency-dev/formats tests: a type-0x01 key whose base64 contains '+'.
    VerifierKey::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").unwrap();
    VerifierKey::parse("EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop").unwrap();
    // Manglings are rejected (as in Go's TestNewVerifier).
    let b = VKEY.as_bytes();
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "mangled key accepted: {s}");
        }
    }
}
