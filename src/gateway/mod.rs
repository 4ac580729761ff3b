pub mod authenticate;
pub mod authorize;
pub mod forward;
pub mod normalize;
mod pipeline;
pub mod route;

pub use pipeline::{explain, handle};
