import { Module } from '@nestjs/common';
import { ImageModule } from '../image/image.module';
import { StatusController } from './status.controller';
import { StatusPage } from './status-page';
import { StatusService } from './status.service';

/** A page that shows the cache at work (`GET /`), and the JSON behind it (`GET /status`). */
@Module({
  imports: [ImageModule],
  controllers: [StatusController],
  providers: [StatusService, StatusPage],
})
export class StatusModule {}
