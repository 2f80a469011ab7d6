"""modelplane's CrossGuard policy pack: importable rules (`policies.rules`) and an offline engine (`policies.engine`)."""
