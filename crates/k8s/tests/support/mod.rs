pub mod api_double;
pub mod containerd;
