"""pytest plugin entry point for perfkit's database isolation fixtures."""
