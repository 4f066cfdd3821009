//! Cross-checks our RFC 9162 implementation against the independent `ct-merkle` crate
//! (which is itself tested against the transparency-dev reference vectors).

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use omega_provenance::merkle::{self, Frontier, Hash, Tree};
use sha2_11::Sha256;

/// Deterministic pseudo-random leaf contents of varying length (xorshift; no fixtures).
fn leaf_data(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let len = (x % 41) as usize;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn to_hash(b: &[u8]) -> Hash {
    b.try_into().unwrap()
}

fn flat(h: &[Hash]) -> Vec<u8> {
    h.iter().flatten().copied().collect()
}

fn sample(n: u64) -> Vec<u64> {
    if n <= 40 {
        return (0..n).collect();
    }
    let mut v = vec![0, 1, n / 2, n - 2, n - 1, n.next_power_of_two() / 2 - 1];
    v.push((n * 7919) % n);
    v.push((n * 104_729 + 13) % n);
    v.retain(|&i| i < n);
    v
}

#[test]
fn roots_and_proofs_match_ct_merkle_for_sizes_1_to_1000() {
    let mut theirs: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let mut ours = Tree::new();
    let mut frontier = Frontier::new();
    assert_eq!(ours.root(), merkle::empty_root());
    assert_eq!(frontier.root(), merkle::empty_root());
    let mut checked_incl = 0u64;
    let mut checked_cons = 0u64;
    for n in 1..=1000u64 {
        let d = leaf_data(n - 1);
        theirs.push(d.clone());
        let lh = merkle::leaf_hash(&d);
        ours.push_leaf_hash(lh);
        assert!(frontier.push_leaf_hash(lh));

        let their_root = theirs.root();
        assert_eq!(their_root.num_leaves(), n);
        let tr = to_hash(their_root.as_bytes().as_slice());
        assert_eq!(ours.root(), tr, "root mismatch at size {n}");
        assert_eq!(frontier.root(), tr, "frontier root mismatch at size {n}");

        for idx in sample(n) {
            let our_proof = ours.inclusion_proof(idx, n).unwrap();
            let their_proof = theirs.prove_inclusion(idx as usize);
            assert_eq!(
                flat(&our_proof),
                their_proof.as_bytes(),
                "inclusion proof n={n} idx={idx}"
            );
            // Our verifier accepts their proof; theirs accepts ours.
            let their_hashes: Vec<Hash> = their_proof.as_bytes().chunks(32).map(to_hash).collect();
            merkle::verify_inclusion(&lh_of(&ours, idx), idx, n, &their_hashes, &tr).unwrap();
            their_root
                .verify_inclusion(
                    &leaf_data(idx),
                    idx,
                    &InclusionProof::<Sha256>::from_bytes(flat(&our_proof)),
                )
                .unwrap();
            // A wrong index must fail (when the tree has more than one leaf).
            if n > 1 {
                let other = (idx + 1) % n;
                assert!(
                    merkle::verify_inclusion(&lh_of(&ours, idx), other, n, &our_proof, &tr)
                        .is_err()
                );
            }
            checked_incl += 1;
        }

        for old in sample(n).into_iter().map(|i| i + 1).filter(|&m| m < n) {
            let our_proof = ours.consistency_proof(old, n).unwrap();
            let their_proof = theirs.prove_consistency((n - old) as usize);
            assert_eq!(
                flat(&our_proof),
                their_proof.as_bytes(),
                "consistency proof {old}->{n}"
            );
            let old_root = ours.root_at(old).unwrap();
            let their_hashes: Vec<Hash> = their_proof.as_bytes().chunks(32).map(to_hash).collect();
            merkle::verify_consistency(old, n, &old_root, &tr, &their_hashes).unwrap();
            let their_old = RootHash::<Sha256>::new(old_root.into(), old);
            their_root
                .verify_consistency(
                    &their_old,
                    &ConsistencyProof::<Sha256>::try_from_bytes(flat(&our_proof)).unwrap(),
                )
                .unwrap();
            checked_cons += 1;
        }
    }
    assert!(
        checked_incl > 5000 && checked_cons > 5000,
        "{checked_incl} {checked_cons}"
    );
}

fn lh_of(t: &Tree, i: u64) -> Hash {
    t.leaf_hash(i).unwrap()
}

#[test]
fn tampered_proofs_fail() {
    let mut ours = Tree::new();
    for i in 0..777 {
        ours.push_leaf_hash(merkle::leaf_hash(&leaf_data(i)));
    }
    let n = ours.len();
    let root = ours.root();
    for idx in [0u64, 5, 511, 512, 776] {
        let leaf = ours.leaf_hash(idx).unwrap();
        let proof = ours.inclusion_proof(idx, n).unwrap();
        merkle::verify_inclusion(&leaf, idx, n, &proof, &root).unwrap();
        for j in 0..proof.len() {
            let mut p = proof.clone();
            p[j][j % 32] ^= 1;
            assert!(merkle::verify_inclusion(&leaf, idx, n, &p, &root).is_err());
        }
        let mut short = proof.clone();
        short.pop();
        assert!(merkle::verify_inclusion(&leaf, idx, n, &short, &root).is_err());
        let mut long = proof.clone();
        long.push([0; 32]);
        assert!(merkle::verify_inclusion(&leaf, idx, n, &long, &root).is_err());
    }
    for old in [1u64, 2, 3, 100, 256, 700] {
        let proof = ours.consistency_proof(old, n).unwrap();
        let old_root = ours.root_at(old).unwrap();
        merkle::verify_consistency(old, n, &old_root, &root, &proof).unwrap();
        for j in 0..proof.len() {
            let mut p = proof.clone();
            p[j][0] ^= 0x80;
            assert!(merkle::verify_consistency(old, n, &old_root, &root, &p).is_err());
        }
        let mut bad_old = old_root;
        bad_old[31] ^= 1;
        assert!(merkle::verify_consistency(old, n, &bad_old, &root, &proof).is_err());
        assert!(merkle::verify_consistency(old + 1, n, &old_root, &root, &proof).is_err());
        assert!(merkle::verify_consistency(n, old, &root, &old_root, &proof).is_err());
    }
}
