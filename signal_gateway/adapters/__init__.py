"""Where the gateway adapts a dependency's internals: one module per dependency, named for it, each
with a test in tests/test_adapters.py that fails loudly when an upgrade changes what it relies on."""
