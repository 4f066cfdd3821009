//! Agent-controlled argument bytes into every ABI decoder the monitor runs (and the answers
//! the SDK decodes). Invariants: no panic, and a value that decodes re-encodes to exactly
//! the same bytes (one encoding per value, so a log or a policy check never sees two forms).
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_agent_abi as abi;

fn canonical<'a, T>(bytes: &'a [u8])
where
    T: serde::Deserialize<'a> + serde::Serialize,
{
    if let Ok(v) = abi::decode::<T>(bytes) {
        let mut buf = vec![0u8; bytes.len() + 16];
        let out = abi::encode(&v, &mut buf).expect("a decoded value re-encodes");
        assert_eq!(&out[..], bytes, "two encodings of one value");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => canonical::<abi::InferRequest<'_>>(bytes),
        1 => canonical::<abi::ToolCallRequest<'_>>(bytes),
        2 => canonical::<abi::DataReadRequest<'_>>(bytes),
        3 => canonical::<abi::SendRequest<'_>>(bytes),
        4 => canonical::<abi::RecvRequest>(bytes),
        5 => canonical::<abi::LogRequest<'_>>(bytes),
        6 => canonical::<abi::InferResponse<'_>>(bytes),
        7 => canonical::<abi::ToolCallResponse<'_>>(bytes),
        8 => canonical::<abi::DataReadResponse<'_>>(bytes),
        9 => canonical::<abi::Delivered<'_>>(bytes),
        10 => canonical::<abi::HostError<'_>>(bytes),
        _ => {
            let ret = i32::from_le_bytes([
                bytes.first().copied().unwrap_or(0),
                bytes.get(1).copied().unwrap_or(0),
                bytes.get(2).copied().unwrap_or(0),
                bytes.get(3).copied().unwrap_or(0),
            ]);
            let _ = abi::decode_return(ret);
        }
    }
});
