// Placeholder: filled in by the envelope work (issue 5).
