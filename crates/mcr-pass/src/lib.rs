//! mcr-pass
