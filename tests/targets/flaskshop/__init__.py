"""A small Flask shop for the tests: views call a repository and a pricing module."""
