//! mcr runtime (see ARCHITECTURE.md).
