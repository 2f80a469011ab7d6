"""modelplane's CrossGuard policy pack: self-contained rules (`policies.rules`); the offline adapter is `infra.review.policy`."""
