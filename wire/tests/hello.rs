use omega_wire::*;

#[test]
fn highest_common_version_wins() {
    assert_eq!(negotiate(&[1], &[1]), Ok(1));
    assert_eq!(negotiate(&[1, 2, 3], &[3, 2]), Ok(3));
    assert_eq!(negotiate(&[1, 2], &[2, 9, 1]), Ok(2));
    assert_eq!(negotiate(&[4, 1], &[1, 4]), Ok(4));
    assert_eq!(negotiate(&[1, 2], &[3, 4]), Err(WireError::NoCommonVersion));
    assert_eq!(negotiate(&[], &[1]), Err(WireError::NoCommonVersion));
    assert_eq!(negotiate(&[0], &[0]), Err(WireError::NoCommonVersion));
    assert_eq!(negotiate(SUPPORTED_VERSIONS, &[VERSION]), Ok(VERSION));
}

#[test]
fn hello_payload_limits() {
    let mut buf = [0u8; 64];
    for bad in [&[][..], &[0u8][..], &[1u8; MAX_VERSIONS + 1][..]] {
        let p = msg::encode(
            &Hello {
                versions: bad,
                window: 1,
            },
            &mut buf,
        )
        .unwrap()
        .to_vec();
        assert_eq!(Hello::decode(&p), Err(WireError::BadMessage));
        let p = msg::encode(
            &HelloAck {
                version: 1,
                versions: bad,
                window: 1,
                log_stored: 0,
            },
            &mut buf,
        )
        .unwrap()
        .to_vec();
        assert_eq!(HelloAck::decode(&p), Err(WireError::BadMessage));
    }
    let p = msg::encode(
        &Hello {
            versions: &[1, 2],
            window: 9,
        },
        &mut buf,
    )
    .unwrap()
    .to_vec();
    assert_eq!(Hello::decode(&p).unwrap().versions, &[1, 2]);
    assert_eq!(Hello::decode(&p[..p.len() - 1]), Err(WireError::BadMessage));
    assert_eq!(
        Hello::decode(b"\xff\xff\xff\xff\xff\xff"),
        Err(WireError::BadMessage)
    );
}

/// Version 2's HelloAck carries the log bytes the host holds; version 1's does not, and
/// neither accepts trailing bytes.
#[test]
fn hello_ack_log_stored_only_from_version_2() {
    let mut buf = [0u8; 64];
    let v1 = HelloAck {
        version: 1,
        versions: &[1, 2],
        window: 4096,
        log_stored: 77,
    };
    let p1 = msg::encode(&v1, &mut buf).unwrap().to_vec();
    // Not on the wire in version 1: decoded as 0.
    assert_eq!(
        HelloAck::decode(&p1),
        Ok(HelloAck {
            log_stored: 0,
            ..v1
        })
    );
    let v2 = HelloAck {
        version: 2,
        log_stored: 1 << 40,
        ..v1
    };
    let p2 = msg::encode(&v2, &mut buf).unwrap().to_vec();
    assert_eq!(p2.len(), p1.len() + 6);
    assert_eq!(HelloAck::decode(&p2), Ok(v2));
    // Truncated or padded: refused.
    assert_eq!(
        HelloAck::decode(&p2[..p1.len()]),
        Err(WireError::BadMessage)
    );
    let mut padded = p1.clone();
    padded.push(0);
    assert_eq!(HelloAck::decode(&padded), Err(WireError::BadMessage));
    let mut padded = p2.clone();
    padded.push(0);
    assert_eq!(HelloAck::decode(&padded), Err(WireError::BadMessage));
}
