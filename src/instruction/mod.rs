//! Syntax nodes to typed instructions, split into stages (layer L2: pure).
