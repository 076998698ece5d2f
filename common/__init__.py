"""Pieces shared by plugin/, driver/, ipam/ and store/ that belong to none of them."""
