"""Work still owed, held in the database: DWS jobs and the Slack outbox, claimed by lease."""
