//! Test fixtures: a tower-test mock of the Kubernetes API server, for the exact calls of a
//! reconcile path. A test reads as the calls it expects, in order, each answered in turn.

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The mock API server's side of a client.
pub struct ApiServer {
    handle: Handle,
    /// Every call seen so far: method and URI.
    pub seen: Vec<(Method, String)>,
}

/// One call the client made, waiting for its answer.
pub struct Call {
    pub method: Method,
    pub uri: String,
    /// The request body as JSON; Null when there is none.
    pub body: Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

impl ApiServer {
    /// A client, and the server that answers it.
    pub fn new() -> (kube::Client, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (
            kube::Client::new(service, "default"),
            ApiServer {
                handle,
                seen: vec![],
            },
        )
    }

    /// The next call; panics when the client makes none.
    pub async fn next(&mut self) -> Call {
        let (req, send) = self
            .handle
            .next_request()
            .await
            .expect("the client made no further call");
        let method = req.method().clone();
        let uri = req.uri().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        self.seen.push((method.clone(), uri.clone()));
        Call {
            method,
            uri,
            body,
            send,
        }
    }

    /// The next call, which must be `method` on `uri`.
    pub async fn expect(&mut self, method: Method, uri: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.uri.as_str()),
            (&method, uri),
            "an unexpected call"
        );
        call
    }

    /// No call was a LIST (a GET of a collection, without a watch).
    pub fn assert_no_list(&self) {
        for (method, uri) in &self.seen {
            let path = uri.split('?').next().unwrap_or_default();
            // A collection's path ends in its plural: .../namespaces/NS/PLURAL or
            // /apis/GROUP/VERSION/PLURAL.
            let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
            let collection = matches!(
                segments.as_slice(),
                ["apis", _, _, "namespaces", _, _]
                    | ["api", _, "namespaces", _, _]
                    | ["apis", _, _, _]
                    | ["api", _, _]
            );
            assert!(
                !(*method == Method::GET && collection),
                "the reconcile listed a collection: {method} {uri}"
            );
        }
    }
}

impl Call {
    /// Answers with `status` and `body`.
    pub fn reply(self, status: u16, body: Value) {
        self.send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    /// Answers a write with its own body, as the API server does.
    pub fn echo(self, status: u16) {
        let body = self.body.clone();
        self.reply(status, body);
    }
}

/// A Status object of the API server, for error answers.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code
    })
}
