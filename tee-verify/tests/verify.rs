//! The fleet verifiers on real recorded evidence, and on that evidence with fields tampered.

use omega_tee_verify::{Error, TcbStatus, Tee, nitro, tdx};
use omega_test_support::tee::{self, TDX};

#[test]
fn tdx_quotes_verify_and_keep_their_tcb_status() {
    let [fresh, outdated] = &TDX;
    let v =
        tdx::verify(fresh.quote, fresh.collateral, fresh.as_of).expect("real TDX quote verifies");
    assert_eq!(v.tee, Tee::Tdx);
    assert_eq!(v.tcb, TcbStatus::UpToDate);
    assert_eq!((v.measurement.len(), v.report_data.len()), (48, 64));
    assert!(!v.debug);
    assert_eq!(
        v.registers
            .iter()
            .filter(|(n, _)| n.starts_with("RTMR"))
            .count(),
        4
    );

    // SECURITY: an out-of-date platform verifies cryptographically but must not read as success.
    // This platform's SVNs are below every level Intel's TCB info lists: refused, and saying so.
    let err = tdx::verify(outdated.quote, outdated.collateral, outdated.as_of).unwrap_err();
    assert_eq!(err, Error::TdxTcbNotListed);
}

#[test]
fn tdx_shared_vectors_are_the_embedded_ones() {
    let Some(dir) = tee::shared("tdx", "the embedded dcap-qvl copies are used") else {
        return;
    };
    for v in &TDX {
        assert_eq!(
            std::fs::read(dir.join(v.name)).unwrap(),
            v.quote,
            "{}",
            v.name
        );
    }
}

#[test]
fn tdx_tampering_is_refused() {
    let v = &TDX[0];
    // Expired collateral: a year later.
    let err = tdx::verify(v.quote, v.collateral, v.as_of + 365 * 86_400).unwrap_err();
    assert!(matches!(err, Error::Tdx(_)), "{err}");
    // Before the collateral was issued.
    assert!(tdx::verify(v.quote, v.collateral, v.as_of - 365 * 86_400).is_err());
    // One flipped bit anywhere in the header, the TD report (MRTD, REPORTDATA, RTMRs) or the
    // signature: every one is refused. Step through the signed part densely.
    let mut refused = 0;
    let mut tried = 0;
    for at in (0..v.quote.len().min(1400)).step_by(7) {
        let mut q = v.quote.to_vec();
        q[at] ^= 0x04;
        tried += 1;
        if tdx::verify(&q, v.collateral, v.as_of).is_err() {
            refused += 1;
        } else {
            panic!("quote with byte {at} flipped verified");
        }
    }
    assert_eq!(refused, tried);
    // Truncated quotes and tampered collateral.
    // (The quote's last bytes end its PEM certification data, which the chain check re-reads.)
    for cut in [0, 48, 632, v.quote.len() - 200] {
        assert!(
            tdx::verify(&v.quote[..cut], v.collateral, v.as_of).is_err(),
            "cut at {cut}"
        );
    }
    let tcb = String::from_utf8(v.collateral.to_vec()).unwrap();
    let tampered = tcb.replacen(
        "\\\"tcbEvaluationDataNumber\\\":",
        "\\\"tcbEvaluationDataNumber\\\":9",
        1,
    );
    assert_ne!(
        tampered, tcb,
        "the collateral's TCB info has an evaluation number to tamper with"
    );
    assert!(
        tdx::verify(v.quote, tampered.as_bytes(), v.as_of).is_err(),
        "tampered TCB info accepted"
    );
    assert!(tdx::verify(v.quote, b"{}", v.as_of).is_err());
    assert!(
        tdx::verify(&vec![0; 20_000], v.collateral, v.as_of).is_err(),
        "oversized quote"
    );
}

fn nitro_root_der(pem: &[u8]) -> Vec<u8> {
    omega_tee_verify::nitro::root_der(pem).expect("root PEM")
}

#[test]
fn nitro_document_verifies_as_of_its_time() {
    let Some(n) = tee::nitro("the Nitro verifier is only tested on synthetic CBOR") else {
        return;
    };
    let root = nitro_root_der(&n.root_pem);
    let v = nitro::verify(&n.document, &root, n.as_of).expect("real Nitro document verifies");
    assert_eq!(v.tee, Tee::Nitro);
    assert_eq!(v.measurement.len(), 48);
    let doc = v.nitro.as_ref().unwrap();
    assert_eq!(doc.module_id, "i-0644948d93f19c17b-enc018a705a4fc6e067");
    assert_eq!(doc.timestamp_ms, 1_694_102_161_556);
    assert_eq!(doc.nonce.as_ref().map(Vec::len), Some(256));
    assert!(doc.public_key.is_none());
    // Recorded from a debug-mode enclave: PCR0 is all zeros, and that is reported.
    assert!(v.debug);
    // Its certificates expired in September 2023: today it must be refused.
    assert_eq!(
        nitro::verify(&n.document, &root, 1_800_000_000).unwrap_err(),
        Error::Nitro("certificate not valid at the verification time")
    );
}

#[test]
fn nitro_tampering_is_refused() {
    let Some(n) = tee::nitro("Nitro tampering is not tested") else {
        return;
    };
    let root = nitro_root_der(&n.root_pem);
    // One byte in eleven flipped in turn (each is a full chain check), then cuts: nothing verifies.
    for at in (0..n.document.len()).step_by(11) {
        let mut d = n.document.clone();
        d[at] ^= 0x01;
        assert!(
            nitro::verify(&d, &root, n.as_of).is_err(),
            "document with byte {at} flipped verified"
        );
    }
    for cut in (0..n.document.len()).step_by(37) {
        assert!(
            nitro::verify(&n.document[..cut], &root, n.as_of).is_err(),
            "document cut at {cut} verified"
        );
    }
    // Another root (the document's own intermediate pretending to be one).
    let mut other = root.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    assert_eq!(
        nitro::verify(&n.document, &other, n.as_of).unwrap_err(),
        Error::Nitro("cabundle does not start at the pinned Nitro root")
    );
}
