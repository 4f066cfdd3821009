//! Our DCAP verification (`omega_tee_verify::dcap`, no_std, in the coordinator image) against
//! the `dcap-qvl` crate as oracle, on the recorded real TDX quotes and their collateral, and
//! on those inputs tampered field by field and byte by byte: both must reach the same verdict,
//! and on success the same TCB status, advisories and TD report.

use omega_tee_verify::dcap::{self, Collateral, Failure, INTEL_SGX_ROOT_KEY};
use omega_test_support::tee::{TDX, TdxVector};

type Verdict = Result<(String, Vec<String>, Vec<u8>, Vec<u8>), &'static str>;

fn ours(quote: &[u8], collateral: &[u8], now: u64) -> Verdict {
    let c: Collateral = serde_json::from_slice(collateral).map_err(|_| "collateral JSON")?;
    match dcap::verify(quote, &c, now) {
        Ok(v) => {
            let mut adv = v.advisories.clone();
            adv.sort();
            Ok((
                v.status.name().to_string(),
                adv,
                v.report.mr_td.to_vec(),
                v.report.report_data.to_vec(),
            ))
        }
        Err(Failure::TcbNotListed) => Err("no matching TCB level"),
        Err(Failure::Refused(_)) => Err("refused"),
    }
}

fn oracle(quote: &[u8], collateral: &[u8], now: u64) -> Verdict {
    let c: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(collateral).map_err(|_| "collateral JSON")?;
    match dcap_qvl::verify::verify(quote, &c, now) {
        Ok(v) => {
            let td = v.report.as_td10().expect("TDX");
            let mut adv = v.advisory_ids.clone();
            adv.sort();
            Ok((
                v.status.clone(),
                adv,
                td.mr_td.to_vec(),
                td.report_data.to_vec(),
            ))
        }
        Err(e) if format!("{e:#}").contains("No matching TCB level") => {
            Err("no matching TCB level")
        }
        Err(_) => Err("refused"),
    }
}

#[track_caller]
fn agree(v: &TdxVector, quote: &[u8], collateral: &[u8], now: u64, what: &str) -> Verdict {
    let (a, b) = (ours(quote, collateral, now), oracle(quote, collateral, now));
    assert_eq!(a, b, "{}: {what}: ours vs dcap-qvl", v.name);
    a
}

/// Like [`agree`], but where we check more than dcap-qvl we may refuse what it accepts: it
/// anchors chains at its pinned root and ignores the root certificate the quote and the
/// collateral carry (and the PCK CRL's issuer chain); we verify them (as Intel's QVL does) and
/// refuse them tampered. It also ignores bytes after the signature data; we allow only zeros.
#[track_caller]
fn agree_or_stricter(
    v: &TdxVector,
    quote: &[u8],
    collateral: &[u8],
    now: u64,
    what: &str,
) -> Verdict {
    let (a, b) = (ours(quote, collateral, now), oracle(quote, collateral, now));
    if a == Err("refused") && b != Err("refused") {
        return a;
    }
    assert_eq!(a, b, "{}: {what}: ours vs dcap-qvl", v.name);
    a
}

/// The byte range of the last (root) certificate of the quote's PEM chain.
fn quote_root_cert(quote: &[u8]) -> std::ops::Range<usize> {
    let begin = b"-----BEGIN CERTIFICATE-----";
    let starts: Vec<usize> = (0..quote.len() - begin.len())
        .filter(|&i| &quote[i..i + begin.len()] == begin)
        .collect();
    assert_eq!(starts.len(), 3, "PCK, PCK CA, root");
    let end = b"-----END CERTIFICATE-----";
    let from = starts[2];
    let to = (from..quote.len() - end.len())
        .find(|&i| &quote[i..i + end.len()] == end)
        .unwrap()
        + end.len();
    from..to
}

#[test]
fn real_quotes_reach_dcap_qvls_verdicts() {
    let [fresh, outdated] = &TDX;
    let v = agree(
        fresh,
        fresh.quote,
        fresh.collateral,
        fresh.as_of,
        "as recorded",
    );
    assert_eq!(v.expect("verifies").0, "UpToDate");
    // A v5 quote whose platform is below every TCB level Intel lists.
    let v = agree(
        outdated,
        outdated.quote,
        outdated.collateral,
        outdated.as_of,
        "as recorded",
    );
    assert_eq!(v, Err("no matching TCB level"));
}

#[test]
fn the_pinned_root_key_is_the_one_dcap_qvl_trusts() {
    // dcap-qvl pins Intel's root certificate itself and accepts the recorded chains; their
    // root carries our pinned key, and no other key is accepted (below).
    use x509_cert::Certificate;
    let c: serde_json::Value = serde_json::from_slice(TDX[0].collateral).unwrap();
    let chain =
        Certificate::load_pem_chain(c["tcb_info_issuer_chain"].as_str().unwrap().as_bytes())
            .unwrap();
    let root = chain.last().unwrap();
    let key = root
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    assert_eq!(key, INTEL_SGX_ROOT_KEY);
    assert!(oracle(TDX[0].quote, TDX[0].collateral, TDX[0].as_of).is_ok());
}

/// SECURITY: each field of the quote, flipped, is refused by both (the quote signature, the
/// QE report and its signature, the attestation key, the QE auth data, the PCK chain).
#[test]
fn every_quote_byte_flipped_reaches_the_same_verdict() {
    for v in &TDX {
        let root = quote_root_cert(v.quote);
        let padding = v.quote.iter().rposition(|&b| b != 0).unwrap() + 1;
        let mut refused = 0;
        for at in (0..v.quote.len()).step_by(23) {
            let mut q = v.quote.to_vec();
            q[at] ^= 0x10;
            let what = format!("byte {at} flipped");
            let verdict = if root.contains(&at) || at >= padding {
                agree_or_stricter(v, &q, v.collateral, v.as_of, &what)
            } else {
                agree(v, &q, v.collateral, v.as_of, &what)
            };
            if verdict.is_err() {
                refused += 1;
            }
        }
        // Flips inside the PEM's base64 can decode to the same certificate (ignored padding
        // bits), and the first quote's zero padding is unsigned: nearly all, not all, refused.
        assert!(
            refused > v.quote.len() / 23 * 9 / 10,
            "{}: {refused}",
            v.name
        );
    }
}

#[test]
fn every_collateral_field_tampered_is_refused_by_both() {
    for v in &TDX {
        let c: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(v.collateral).unwrap();
        for field in c.keys() {
            let text = c[field].as_str().unwrap();
            // Change one character in the middle, keeping the field's alphabet (hex, base64,
            // JSON digits) so a parser reaches the signature or chain checks.
            let mid = text.len() / 2;
            let (pos, ch) = text[mid..]
                .char_indices()
                .find(|(_, ch)| ch.is_ascii_digit())
                .map(|(i, ch)| (mid + i, ch))
                .expect("a digit to change");
            let swapped = if ch == '1' { '2' } else { '1' };
            let mut t = c.clone();
            let mut s = text.to_string();
            s.replace_range(pos..pos + 1, &swapped.to_string());
            t[field] = serde_json::Value::String(s);
            let bytes = serde_json::to_vec(&t).unwrap();
            let what = format!("{field} tampered");
            let verdict = if field.ends_with("issuer_chain") {
                agree_or_stricter(v, v.quote, &bytes, v.as_of, &what)
            } else {
                agree(v, v.quote, &bytes, v.as_of, &what)
            };
            assert!(verdict.is_err(), "{}: {what}, accepted", v.name);
        }
    }
}

#[test]
fn collateral_outside_its_dates_reaches_the_same_verdict() {
    for v in &TDX {
        for (now, what) in [
            (v.as_of - 40 * 86_400, "before issue"),
            (v.as_of + 40 * 86_400, "after nextUpdate"),
            (0, "the epoch"),
            (u64::MAX / 4, "far future"),
        ] {
            assert!(
                agree(v, v.quote, v.collateral, now, what).is_err(),
                "{}: {what}",
                v.name
            );
        }
    }
}

#[test]
fn dates_parse_like_rfc_3339() {
    assert_eq!(dcap::unix_time("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(dcap::unix_time("2025-06-20T00:16:03Z"), Ok(1_750_378_563));
    assert_eq!(
        dcap::unix_time("2024-02-29T12:00:00.123Z"),
        Ok(1_709_208_000)
    );
    for bad in [
        "",
        "Z",
        "2025-06-20 00:16:03Z",
        "2025-13-01T00:00:00Z",
        "2025-06-20T00:16:03",
        "２０２５-06-20T00:16:03Z",
    ] {
        assert!(dcap::unix_time(bad).is_err(), "{bad:?}");
    }
}
