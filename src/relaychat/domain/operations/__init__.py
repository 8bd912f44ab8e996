"""Operating an instance: the doctor's checks (`relaychat doctor`, `GET /api/admin/doctor`)."""
