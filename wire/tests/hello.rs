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
