-- The request's EC2 launch generation, part of RunInstances' ClientToken (vdi.ec2.client_token; 0 is the first
-- launch's token). AWS keeps a token for at least a day after its instance terminates, so a request whose
-- recorded instance was terminated or lost relaunches under the next generation (vdi.provision.launch moves it
-- on; vdi.store.requests holds the SQL).
ALTER TABLE desktop_requests ADD COLUMN launch_generation integer NOT NULL DEFAULT 0 CHECK (launch_generation >= 0);
