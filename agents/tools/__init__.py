"""Tools agents can call, grouped into toolsets; the dispatcher enforces who may call what."""
