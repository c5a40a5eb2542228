-- Whether a machine is online, as its Sparkplug B edge node last said (births and deaths),
-- and since when. Machines that never spoke Sparkplug have no row: their presence is unknown.
CREATE TABLE machine_presence (
    machine_id UUID PRIMARY KEY REFERENCES machine_metadata (id) ON DELETE CASCADE,
    online BOOLEAN NOT NULL,
    since TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
