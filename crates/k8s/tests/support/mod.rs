pub mod api_double;
