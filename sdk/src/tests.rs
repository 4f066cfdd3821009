//! The SDK against the host double: encodings, the held-result protocol, error details.

extern crate std;

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::cell::RefCell;
use std::rc::Rc;

use omega_agent_abi::{
    self as abi, DataReadRequest, DataReadResponse, Delivered, HostError, InferRequest,
    InferResponse, LogRequest, RecvRequest, SendRequest, ToolCallRequest, ToolCallResponse,
};

use crate::host_double::{self, Exited, Reply};
use crate::{Error, Func, Level, Part, Role};

/// The calls a host double saw: (function, request bytes).
type Seen = Rc<RefCell<Vec<(Func, Vec<u8>)>>>;

/// Installs `host` and returns the calls it sees.
fn record(mut host: impl FnMut(Func, &[u8]) -> Reply + 'static) -> Seen {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    host_double::install(move |f: Func, args: &[u8]| {
        log.borrow_mut().push((f, args.to_vec()));
        host(f, args)
    });
    seen
}

#[test]
fn infer_sends_the_request_and_returns_the_text() {
    let seen = record(|_, args| {
        let req: InferRequest<'_> = abi::decode(args).unwrap();
        Reply::ok(&InferResponse {
            text: &alloc::format!("{}/{}/{}", req.model, req.prompt, req.max_tokens),
        })
    });
    assert_eq!(
        crate::infer("local_llm", "hi", 7).unwrap(),
        "local_llm/hi/7"
    );
    assert_eq!(seen.borrow()[0].0, Func::Infer);
}

#[test]
fn a_response_longer_than_the_first_buffer_is_fetched_whole() {
    let long = "x".repeat(5000);
    let text = long.clone();
    record(move |_, _| Reply::ok(&InferResponse { text: &text }));
    assert_eq!(crate::infer("m", "p", 1).unwrap(), long);
}

#[test]
fn a_denial_names_the_rule() {
    record(|_, _| Reply::err(HostError::Denied { rule: "flow:phi" }));
    let e = crate::send_text("outreach", None, "chart").unwrap_err();
    assert_eq!(
        e,
        Error::Denied {
            rule: "flow:phi".into()
        }
    );
    assert_eq!(e.to_string(), "denied by policy rule `flow:phi`");
}

#[test]
fn errors_carry_their_detail_or_fall_back_to_the_code() {
    record(|_, _| {
        Reply::err(HostError::Unavailable {
            reason: "no inference proxy",
        })
    });
    assert_eq!(
        crate::infer("m", "p", 1),
        Err(Error::Unavailable {
            reason: "no inference proxy".into()
        })
    );
    // A detail that does not decode (or names another error) leaves the code alone.
    record(|_, _| Reply::Err(abi::ErrorCode::Denied, vec![0xff, 0xff]));
    assert_eq!(
        crate::infer("m", "p", 1),
        Err(Error::Denied { rule: "?".into() })
    );
    record(|_, _| {
        Reply::Err(
            abi::ErrorCode::Failed,
            postcard::to_allocvec(&HostError::NoResult).unwrap(),
        )
    });
    assert_eq!(
        crate::infer("m", "p", 1),
        Err(Error::Failed {
            reason: String::new()
        })
    );
}

#[test]
fn an_undecodable_response_is_a_protocol_error() {
    record(|_, _| Reply::Ok(vec![0xff; 3]));
    assert_eq!(crate::infer("m", "p", 1), Err(Error::Protocol));
    record(|_, _| Reply::Ok(vec![1]));
    assert_eq!(crate::log(Level::Info, "x"), Err(Error::Protocol));
}

#[test]
fn tool_call_passes_the_arguments_and_reports_tool_errors() {
    record(|_, args| {
        let req: ToolCallRequest<'_> = abi::decode(args).unwrap();
        assert_eq!(
            (req.tool, req.arguments),
            ("calendar.book", r#"{"slot":1}"#)
        );
        Reply::ok(&ToolCallResponse {
            is_error: true,
            content: "[]",
        })
    });
    let r = crate::tool_call("calendar.book", r#"{"slot":1}"#).unwrap();
    assert!(r.is_error);
    assert_eq!(r.content, "[]");
}

#[test]
fn read_to_end_reads_in_chunks_and_refuses_a_stalled_source() {
    let item: Vec<u8> = (0..=255u8).cycle().take(150_000).collect();
    let data = item.clone();
    record(move |_, args| {
        let req: DataReadRequest<'_> = abi::decode(args).unwrap();
        let start = req.offset as usize;
        let end = (start + req.max_len as usize).min(data.len());
        Reply::ok(&DataReadResponse {
            data: &data[start..end],
            total_len: data.len() as u64,
        })
    });
    assert_eq!(crate::read_to_end("ehr", "patients/1").unwrap(), item);

    record(|_, _| {
        Reply::ok(&DataReadResponse {
            data: &[],
            total_len: 10,
        })
    });
    assert_eq!(crate::read_to_end("ehr", "p"), Err(Error::Protocol));
}

#[test]
fn log_lines_are_cut_at_the_limit_on_a_char_boundary() {
    let seen = record(|_, _| Reply::Ok(Vec::new()));
    let line = "é".repeat(abi::MAX_LOG); // 2 bytes each
    crate::log(Level::Warn, &line).unwrap();
    crate::info!("n = {}", 3);
    let seen = seen.borrow();
    let first: LogRequest<'_> = abi::decode(&seen[0].1).unwrap();
    assert_eq!(first.level, Level::Warn);
    assert_eq!(first.text.len(), abi::MAX_LOG);
    let second: LogRequest<'_> = abi::decode(&seen[1].1).unwrap();
    assert_eq!((second.level, second.text), (Level::Info, "n = 3"));
}

/// The bytes of a message `from` sent in `context` with `parts`.
fn delivered(from: &str, context: Option<&str>, parts: &[Part<'_>]) -> Vec<u8> {
    let mut labels = abi::heapless::Vec::new();
    labels.push("phi").unwrap();
    let message = abi::Message {
        message_id: "m9",
        context_id: context,
        role: Role::Agent,
        parts: parts.iter().copied().collect(),
    };
    postcard::to_allocvec(&Delivered {
        from,
        labels,
        message,
    })
    .unwrap()
}

#[test]
fn recv_and_reply_keep_the_conversation() {
    let parts = [
        Part::Text { text: "a" },
        Part::Data {
            media_type: "application/json",
            data: b"{}",
        },
        Part::Text { text: "b" },
    ];
    let message = delivered("triage", Some("c1"), &parts);
    let seen = record(move |f, args| match f {
        Func::Recv => {
            let req: RecvRequest = abi::decode(args).unwrap();
            assert!(req.wait);
            Reply::Ok(message.clone())
        }
        _ => Reply::Ok(Vec::new()),
    });
    let got = crate::recv().unwrap();
    assert_eq!(got.from(), "triage");
    assert_eq!(got.text(), "a\nb");
    assert_eq!(got.delivered().labels.as_slice(), ["phi"]);
    got.reply_text("summary").unwrap();

    let seen = seen.borrow();
    let (f, bytes) = &seen[1];
    assert_eq!(*f, Func::Send);
    let sent: SendRequest<'_> = abi::decode(bytes).unwrap();
    assert_eq!(sent.to, "triage");
    assert_eq!(sent.message.context_id, Some("c1"));
    assert_eq!(sent.message.role, Role::Agent);
    assert_eq!(
        sent.message.parts.as_slice(),
        [Part::Text { text: "summary" }]
    );
    assert!(sent.message.message_id.starts_with('m'));
}

#[test]
fn send_text_is_a_user_request_in_its_context() {
    let seen = record(|_, _| Reply::Ok(Vec::new()));
    crate::send_text("summariser", Some("c7"), "hi").unwrap();
    let seen = seen.borrow();
    let sent: SendRequest<'_> = abi::decode(&seen[0].1).unwrap();
    assert_eq!(
        (sent.to, sent.message.role, sent.message.context_id),
        ("summariser", Role::User, Some("c7"))
    );
    assert_eq!(sent.message.parts.as_slice(), [Part::Text { text: "hi" }]);
}

#[test]
fn try_recv_on_an_empty_inbox_is_none() {
    record(|_, args| {
        let req: RecvRequest = abi::decode(args).unwrap();
        assert!(!req.wait);
        Reply::err(HostError::WouldBlock)
    });
    assert_eq!(crate::try_recv().unwrap(), None);
    record(|_, _| Reply::Ok(vec![0xff]));
    assert_eq!(crate::try_recv(), Err(Error::Protocol));
}

#[test]
fn message_ids_are_fresh() {
    assert_ne!(crate::next_message_id(), crate::next_message_id());
}

#[test]
fn random_fills_past_the_per_call_limit() {
    struct Counting(u8);
    impl host_double::Host for Counting {
        fn call(&mut self, _: Func, _: &[u8]) -> Reply {
            unreachable!()
        }
        fn random(&mut self, buf: &mut [u8]) {
            assert!(buf.len() <= abi::MAX_RANDOM);
            self.0 += 1;
            buf.fill(self.0);
        }
        fn now(&mut self) -> i64 {
            -5
        }
    }
    host_double::install(Counting(0));
    let mut buf = [0u8; 600];
    crate::random(&mut buf).unwrap();
    assert_eq!((buf[0], buf[300], buf[599]), (1, 2, 3));
    // A negative clock reads as 0 rather than wrapping.
    assert_eq!(crate::now(), 0);
}

fn failing_main() -> Result<(), Error> {
    Err(Error::WouldBlock)
}

#[test]
fn an_agent_error_is_logged_and_exits_1() {
    let seen = record(|_, _| Reply::Ok(Vec::new()));
    let stop = std::panic::catch_unwind(|| crate::__run(failing_main)).unwrap_err();
    assert_eq!(stop.downcast_ref::<Exited>(), Some(&Exited(1)));
    let seen = seen.borrow();
    let line: LogRequest<'_> = abi::decode(&seen[0].1).unwrap();
    assert_eq!((line.level, line.text), (Level::Error, "would block"));
}

#[test]
fn every_request_function_is_an_abi_import_with_the_call_shape() {
    for f in Func::ALL {
        let imp = f.import();
        assert_eq!(abi::import(imp.name), Some(imp));
        assert_eq!(imp.params.len(), 4, "{}", imp.name);
    }
    // The literal in the wasm32 import block is the ABI's module name.
    let wasm_rs = include_str!("sys/wasm.rs");
    assert!(wasm_rs.contains(&alloc::format!("wasm_import_module = \"{}\"", abi::MODULE)));
}

#[test]
fn a_streamed_answer_is_read_piece_by_piece_until_done() {
    let mut pieces = alloc::vec!["Blue", "", " sky"].into_iter();
    host_double::install(move |f: Func, args: &[u8]| match f {
        Func::InferStream => {
            let req: abi::InferRequest<'_> = abi::decode(args).unwrap();
            assert_eq!((req.model, req.prompt, req.max_tokens), ("llm", "sky?", 8));
            Reply::ok(&abi::InferStream { stream: 7 })
        }
        Func::InferNext => {
            let req: abi::InferNextRequest = abi::decode(args).unwrap();
            assert_eq!(req.stream, 7);
            match pieces.next() {
                Some(text) => Reply::ok(&abi::InferChunk {
                    text,
                    done: false,
                    completion_tokens: None,
                }),
                None => Reply::ok(&abi::InferChunk {
                    text: ".",
                    done: true,
                    completion_tokens: Some(3),
                }),
            }
        }
        f => panic!("unexpected {f:?}"),
    });
    let mut s = crate::infer_stream("llm", "sky?", 8).unwrap();
    assert_eq!(s.next_text().unwrap().as_deref(), Some("Blue"));
    // An empty piece is skipped, not mistaken for the end.
    assert_eq!(s.next_text().unwrap().as_deref(), Some(" sky"));
    assert!(!s.is_done());
    assert_eq!(s.next_text().unwrap().as_deref(), Some("."));
    assert!(s.is_done());
    assert_eq!(s.completion_tokens(), Some(3));
    assert_eq!(s.next_text().unwrap(), None);
}

#[test]
fn a_failed_stream_reports_the_reason_and_ends() {
    host_double::install(|f: Func, _: &[u8]| match f {
        Func::InferStream => Reply::ok(&abi::InferStream { stream: 1 }),
        _ => Reply::err(HostError::Failed {
            reason: "session broken",
        }),
    });
    let mut s = crate::infer_stream("llm", "x", 8).unwrap();
    assert!(matches!(s.next_text(), Err(Error::Failed { reason }) if reason == "session broken"));
    assert_eq!(s.next_text().unwrap(), None);
}
