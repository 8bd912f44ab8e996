"""Channels: Twilio numbers and the like (placeholder; being written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
