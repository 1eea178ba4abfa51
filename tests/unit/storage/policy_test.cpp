// Placeholder: filled in by the storage unit tests.
