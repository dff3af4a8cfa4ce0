"""Training, evaluation and retraining of the chatbot's model."""
