//! The gateway: everything between the outside world and the application loop's rings.
//!
//! - [`bridge`]: the FIX acceptor's application: order entry between sessions and the rings.
//! - [`fix`]: the FIX 4.4 acceptor: codec, session layer, session store and TCP loop.
//! - [`http`]: the HTTP/JSON wallet and admin API (axum), with its read model and metrics.
//! - [`message`]: the owned FIX message the other modules pass around.
//! - [`orders`]: order entry, from application messages to engine commands and from the
//!   sequenced output stream to execution reports.

pub mod bridge;
pub mod fix;
pub mod http;
pub mod message;
pub mod orders;

pub use message::{FieldError, Message};
