"""Amazon Braket: device catalogue, quantum tasks and hybrid jobs."""
