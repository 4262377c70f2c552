// Imported first by the agent's command line, so that it runs before the other modules load and
// allocate (see young-generation.ts).
import { keepYoungGenerationSmall } from './young-generation.js';

keepYoungGenerationSmall();
