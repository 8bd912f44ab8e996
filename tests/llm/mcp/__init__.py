"""Tests of MCP servers as agent tools."""
