"""The test suite; a package so that the benchmarks import its PyTorch
reference (``tests.panns_reference``) as the tests do."""
