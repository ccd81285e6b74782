//! Shell-style word processing as BuildKit's Dockerfile front end does it: quote
//! removal, escapes, `$VAR`/`${VAR…}` expansion and word splitting (layer L1: pure).
