//! The operator credential: every route that writes or spends refuses a request without
//! `DATA_DIR/api.token`, works with it, and gives no other origin a way in.

use std::process::Command;

use reqwest::{Method, header};
use serde_json::Value;
use streamgate_tests::{bin, http_client, init_node_dir, operator_token, start_node, test_config};

/// One request: method, path, extra headers and body.
struct Call {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn call(method: Method, path: &str) -> Call {
    Call {
        method,
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Call {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
}

/// Sends `call` to `api` with `token` (if any) and `origin` (if any).
fn send(
    runtime: &tokio::runtime::Runtime,
    api: &str,
    call: &Call,
    token: Option<&str>,
    origin: Option<&str>,
) -> (u16, header::HeaderMap, Value) {
    runtime.block_on(async {
        let mut request = http_client()
            .request(call.method.clone(), format!("{api}{}", call.path))
            .body(call.body.clone());
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(o) = origin {
            request = request.header(header::ORIGIN, o);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

#[test]
fn every_write_endpoint_needs_the_operator_token_and_no_other_origin_can_use_it() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config()).expect("init");
    let node = start_node(&dir, &[]).expect("node");
    let api = &node.info.api_url;
    let token = operator_token(api);

    let tus = |c: Call| c.header("Tus-Resumable", "1.0.0");
    let publish_body = br#"{"upload_id":"0123456789abcdef0123456789abcdef"}"#;
    let unknown = "/api/v1/uploads/0123456789abcdef0123456789abcdef";
    // (request, the status it gets with the token: the route ran and answered for itself)
    let writes = [
        (
            call(Method::POST, "/api/v1/blobs").body(b"operator bytes"),
            201,
        ),
        (
            tus(call(Method::POST, "/api/v1/uploads")).header("Upload-Length", "10"),
            201,
        ),
        (tus(call(Method::HEAD, unknown)), 404),
        (
            tus(call(Method::PATCH, unknown))
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
                .body(b"0123456789"),
            404,
        ),
        (tus(call(Method::DELETE, unknown)), 404),
        (
            call(Method::POST, "/api/v1/publish")
                .header("Content-Type", "application/json")
                .body(publish_body),
            404,
        ),
        (call(Method::GET, "/api/v1/jobs"), 200),
        (call(Method::GET, "/api/v1/jobs/nope"), 404),
        (call(Method::POST, "/api/v1/jobs/nope/cancel"), 404),
        (
            // A manifest nobody has: looked for in the swarm, not found.
            call(
                Method::POST,
                "/api/v1/manifests/9a5cb3f4c0d42a2ae3c4a1f42aa1cde98c5a18ebde9a3f7a45e32b8c0a8e2a18/pin",
            ),
            404,
        ),
        (
            call(
                Method::POST,
                "/api/v1/manifests/9a5cb3f4c0d42a2ae3c4a1f42aa1cde98c5a18ebde9a3f7a45e32b8c0a8e2a18/segments/0/report",
            )
            .header("Content-Type", "application/json")
            .body(br#"{"reason":"green blocks"}"#),
            404,
        ),
    ];
    for (write, with_token) in &writes {
        let what = format!("{} {}", write.method, write.path);
        // HEAD answers carry no body, so no error code to read.
        let refused = |token: Option<&str>, wanted: &str| {
            let (code, _, body) = send(&runtime, api, write, token, None);
            assert_eq!(code, 401, "{what} with {token:?}: {body}");
            if write.method != Method::HEAD {
                assert_eq!(body["error"], wanted, "{what} with {token:?}: {body}");
            }
        };
        refused(None, "operator_token_required");
        refused(Some(&"0".repeat(64)), "wrong_operator_token");
        refused(Some(&token[..63]), "wrong_operator_token");
        let (code, _, body) = send(&runtime, api, write, Some(&token), None);
        assert_eq!(code, *with_token, "{what} with the token: {body}");

        // A page elsewhere: the browser's preflight gets no CORS grant, so it never sends
        // the request; a "simple" request it may send without asking is refused (it cannot
        // carry the token), and no answer is readable by that page.
        let evil = "https://evil.example";
        let preflight = call(Method::OPTIONS, &write.path)
            .header("Access-Control-Request-Method", write.method.as_str())
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            );
        let (_, headers, _) = send(&runtime, api, &preflight, None, Some(evil));
        assert!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{what}: preflight granted: {headers:?}"
        );
        let (code, headers, _) = send(&runtime, api, write, None, Some(evil));
        assert_eq!(code, 401, "{what} from another origin");
        assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let (_, headers, _) = send(&runtime, api, write, Some(&token), Some(evil));
        assert!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{what}: another origin may read the operator's answer"
        );
    }

    // The CLI finds the node from its data folder, and never sends that folder's token to
    // another node.
    let file = root.path().join("note.txt");
    std::fs::write(&file, b"from the operator").expect("write");
    let out = Command::new(bin("streamgate"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("add")
        .arg(&file)
        .output()
        .expect("add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin("streamgate"))
        .args(["--node", "http://127.0.0.1:9", "--data-dir"])
        .arg(&dir)
        .arg("status")
        .output()
        .expect("status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("its operator token is not sent there"),
        "{stderr}"
    );

    // Reads of public content need nothing, and any page may read them.
    for path in ["/health", "/api/v1/status", "/api/v1/manifests"] {
        let (code, headers, _) = send(
            &runtime,
            api,
            &call(Method::GET, path),
            None,
            Some("https://evil.example"),
        );
        assert_eq!(code, 200, "{path}");
        assert_eq!(
            headers
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .and_then(|v| v.to_str().ok()),
            Some("*"),
            "{path}"
        );
    }
}
