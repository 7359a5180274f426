"""The fault suite: the production configuration under faults, each ending in counts
(lost, doubled stored / live, stuck, recovery time). Run it alone with `make faults`."""
