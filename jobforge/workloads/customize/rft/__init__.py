"""Bedrock REINFORCEMENT_FINE_TUNING on the agent-RL engine (``jobforge.workloads.agent_rft``).

Where an AgentRFT job hands each prompt to the user's agent, here jobforge is the agent: each step the
policy answers every prompt ``trainingSamplePerPrompt`` times in one turn (``rollouts``), the grader
Lambda scores the answers in batches (``grader``), and the engine's trainer takes its GRPO step on the
captured turns. ``config`` maps ``rftConfig`` onto the engine's hyperparameters (pure Python: the API
checks a request with it); ``job`` runs the job phase by phase and writes Bedrock's files and the model.
"""
